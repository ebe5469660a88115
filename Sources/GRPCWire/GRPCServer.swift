internal import IOLoop
internal import Glibc
import Synchronization

/// Server settings. Defaults suit loopback Flight traffic; every limit is enforced per stream, per connection or
/// for the whole server, and each one is listed with its default in the README ("Limits").
public struct GRPCServerConfiguration: Sendable {
    /// Address to bind (numeric IPv4/IPv6 or a name from /etc/hosts); `::` or `0.0.0.0` for all.
    public var host: String
    /// Port to bind; 0 picks a free port (see ``GRPCServer/port``).
    public var port: Int
    /// Event-loop threads (default: online processors).
    public var eventLoopCount: Int
    /// TLS (ALPN h2) when set; plain h2c with prior knowledge otherwise.
    public var tls: TLSConfiguration?
    /// Largest accepted request message. Default 2 GiB - 1 (Arrow Flight lifts gRPC's 4 MiB cap; a gRPC length
    /// prefix cannot exceed 4 GiB). Larger messages end the call with RESOURCE_EXHAUSTED.
    public var maxReceiveMessageSize: Int
    /// SETTINGS_MAX_CONCURRENT_STREAMS announced to clients.
    public var maxConcurrentStreams: UInt32
    /// Most open connections (default 10,000). At the cap, the oldest connection still in its handshake (no
    /// HTTP/2 preface or TLS handshake yet) is closed to make room; when there is none, the new connection gets
    /// GOAWAY(ENHANCE_YOUR_CALM) and is closed, and the established ones keep being served.
    public var maxConnections: Int
    /// Most open connections from one peer IP address (default 10,000), with the same policy as `maxConnections`.
    public var maxConnectionsPerPeer: Int
    /// A connection that has not sent its HTTP/2 preface (or finished its TLS handshake) within this is closed.
    /// Default 10 s.
    public var handshakeTimeout: Duration
    /// A connection without open streams for this long gets GOAWAY(NO_ERROR) and is closed (nil: never).
    /// Default 5 minutes.
    public var idleTimeout: Duration?
    /// Request bytes one connection may hold buffered: partial messages (their buffers as allocated) plus
    /// complete messages its handlers have not taken. A message that does not fit ends its call with
    /// RESOURCE_EXHAUSTED. Default 2 GiB (one message of `maxReceiveMessageSize` fits).
    public var connectionReceiveBudget: Int
    /// Request bytes all connections together may hold buffered, as for `connectionReceiveBudget`.
    /// Default: half the physical memory, clamped to 256 MiB ... 8 GiB, and to half of `RLIMIT_AS` when set.
    public var serverReceiveBudget: Int
    /// Request bytes all connections from one client address may hold buffered together, as for
    /// `connectionReceiveBudget`, so that many connections do not buy one peer the whole server budget.
    /// Default (nil): half of `serverReceiveBudget`.
    public var peerReceiveBudget: Int?
    /// Unsent response bytes of all streams of one connection; beyond it, a handler's `send` waits until its own
    /// stream's queue is empty. Default 32 MiB.
    public var connectionSendBufferLimit: Int
    /// Asked for every announced request message before it is buffered (e.g. a memory limit); nil admits all.
    public var admission: (any GRPCMessageAdmission)?
    /// Largest request header block (bytes, HPACK-decoded + 32 per field); larger streams are reset.
    public var maxHeaderListSize: Int
    /// Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE).
    public var streamWindowSize: UInt32
    /// Connection receive window.
    public var connectionWindowSize: Int32
    /// SETTINGS_MAX_FRAME_SIZE (16,384 ... 16,777,215).
    public var maxFrameSize: UInt32
    /// Unsent response bytes per stream before `send` suspends.
    public var streamSendBufferLimit: Int
    /// Request bytes one stream may hold before its window stops reopening: complete messages its handler has not
    /// taken plus the partial one (a message alone on its stream always completes, within the budgets below).
    public var streamReceiveBufferLimit: Int
    /// Send a PING after this much silence from a client (nil: never). A connection whose PING is not answered
    /// within `keepaliveTimeout` is closed.
    public var keepaliveInterval: Duration?
    /// How long a keepalive PING may stay unanswered.
    public var keepaliveTimeout: Duration
    /// Serves connections that do not begin with the HTTP/2 preface (HTTP/1.1 on the gRPC port; with TLS, those
    /// that negotiate ALPN `http/1.1` or none); nil: every connection is HTTP/2.
    public var http1: (any HTTP1ConnectionHandler)?

    /// Creates a configuration with defaults.
    public init(host: String = "127.0.0.1", port: Int = 0, tls: TLSConfiguration? = nil) {
        self.host = host
        self.port = port
        self.eventLoopCount = EventLoopGroup.defaultCount
        self.tls = tls
        self.maxReceiveMessageSize = Int(Int32.max)
        self.maxConcurrentStreams = 4096
        self.maxConnections = 10_000
        self.maxConnectionsPerPeer = 10_000
        self.handshakeTimeout = .seconds(10)
        self.idleTimeout = .seconds(300)
        self.connectionReceiveBudget = 2 << 30
        self.serverReceiveBudget = Self.defaultServerReceiveBudget
        self.connectionSendBufferLimit = 32 << 20
        self.admission = nil
        self.maxHeaderListSize = 16 << 10
        // A window of 8 MiB let a client send only 4 MiB per WINDOW_UPDATE round trip, which a loaded machine
        // stretches to tens of milliseconds (docs/BENCHMARKS.md, "Flight profile"); every byte is still charged to
        // the receive budgets below before it is held.
        self.streamWindowSize = 32 << 20
        self.connectionWindowSize = 256 << 20
        self.maxFrameSize = 4 << 20
        self.streamSendBufferLimit = 4 << 20
        self.streamReceiveBufferLimit = 16 << 20
        self.keepaliveInterval = .seconds(60)
        self.keepaliveTimeout = .seconds(20)
        self.http1 = nil
    }

    /// Half the physical memory, clamped to 256 MiB ... 8 GiB, and to half the address-space limit when set.
    static var defaultServerReceiveBudget: Int {
        let pages = Int(sysconf(Int32(_SC_PHYS_PAGES)))
        let size = Int(sysconf(Int32(_SC_PAGESIZE)))
        let (total, overflow) = pages.multipliedReportingOverflow(by: size)
        let half = overflow || pages <= 0 || size <= 0 ? 8 << 30 : total / 2
        var budget = min(max(half, 256 << 20), 8 << 30)
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max,
            limit.rlim_cur < rlim_t(Int.max)
        {
            budget = min(budget, max(64 << 20, Int(limit.rlim_cur) / 2))
        }
        return budget
    }
}

/// State shared by the listener, the connections and the public server object.
final class ServerShared: Sendable {
    let configuration: GRPCServerConfiguration
    let router: GRPCRouter
    let tlsContext: TLSContext?
    /// Buffered request bytes of all connections.
    let receiveBudget: ByteBudget
    /// Buffered request bytes per client address.
    let peerBudgets: PeerReceiveBudgets
    /// Open connections under the caps and the handshake timeout (IOLoop's listener policy).
    let registry: ConnectionRegistry
    /// Bytes received from clients, and how many of them went straight into message buffers.
    let receivedBytes = ReceivedByteCounts()

    init(configuration: GRPCServerConfiguration, router: GRPCRouter, tlsContext: TLSContext?) {
        self.configuration = configuration
        self.router = router
        self.tlsContext = tlsContext
        self.receiveBudget = ByteBudget(limit: configuration.serverReceiveBudget)
        self.peerBudgets = PeerReceiveBudgets(
            limit: configuration.peerReceiveBudget ?? configuration.serverReceiveBudget / 2)
        self.registry = ConnectionRegistry(
            policy: ListenerPolicy(
                maxConnections: configuration.maxConnections,
                maxConnectionsPerPeer: configuration.maxConnectionsPerPeer,
                handshakeTimeout: configuration.handshakeTimeout))
    }

    func connectionStarted(key: Int, loop: EventLoop, handlerID: UInt64) {
        self.registry.connectionStarted(key: key, loop: loop, handlerID: handlerID)
    }

    /// The connection sent its preface (and finished TLS): it is no longer first in line for eviction.
    func connectionEstablished(key: Int) { self.registry.connectionEstablished(key: key) }

    func connectionEnded(key: Int) { self.registry.connectionEnded(key: key) }

    var openConnections: Int { self.registry.openConnections }

    var liveConnections: [(loop: EventLoop, handlerID: UInt64)] { self.registry.liveConnections }
}

func closeFD(_ fd: Int32) -> Int32 { SocketCalls.close(fd) }

/// What the IOLoop listener does with gRPC connections: HTTP/2 server connections, a GOAWAY for h2c clients
/// refused at a cap.
struct GRPCListenerDelegate: ListenerDelegate {
    let shared: ServerShared

    func refuse(fd: Int32) {
        if self.shared.tlsContext == nil { Self.refuseHTTP2(fd, reason: "connection limit reached") }
    }

    func start(fd: Int32, key: Int, peer: PeerAddress, runner: LoopRunner) {
        if self.shared.configuration.http1 != nil {
            SniffedConnection.start(fd: fd, runner: runner, shared: self.shared, key: key, peer: peer)
        } else {
            ServerConnection.start(fd: fd, runner: runner, shared: self.shared, key: key, peer: peer)
        }
    }

    func evict(handlerID: UInt64, reason: Eviction, runner: LoopRunner) {
        (runner.handler(handlerID) as? any ServerSideConnection)?.evict(runner: runner)
    }

    /// Tells an h2c client why it is refused before closing: the server preface (empty SETTINGS) and
    /// GOAWAY(last stream 0, ENHANCE_YOUR_CALM, `reason`), in one non-blocking write (best effort).
    static func refuseHTTP2(_ fd: Int32, reason: String) {
        let debug = Array(reason.utf8.prefix(200))
        var bytes: [UInt8] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0]
        let length = 8 + debug.count
        bytes += [0, UInt8(length >> 8), UInt8(length & 0xFF), 0x7, 0, 0, 0, 0, 0]
        bytes += [0, 0, 0, 0, 0, 0, 0, 0x0B]
        bytes += debug
        SocketCalls.sendBestEffort(fd, bytes)
    }
}

/// A gRPC server over HTTP/2 (h2c or TLS) on event-loop threads it owns.
///
/// Handlers run as Swift tasks on the cooperative pool. `start()` binds and returns at once; `shutdown` sends
/// GOAWAY, lets in-flight calls finish within a grace period, then closes everything.
public final class GRPCServer: Sendable {
    private let shared: ServerShared
    private let group: EventLoopGroup
    private let listenerFD: Int32
    private let listenerSlot = ListenerSlot()
    /// The bound port (useful with port 0).
    public let port: Int

    /// Binds and starts serving `router`.
    /// - Throws: `GRPCWireError.systemCall`/`.invalidAddress` when binding fails, `.tls` for bad certificates.
    public init(configuration: GRPCServerConfiguration, router: GRPCRouter) throws(GRPCWireError) {
        let tls = try configuration.tls.map { c throws(GRPCWireError) in
            try TLSContext.grpc(c, isServer: true, acceptsHTTP1: configuration.http1 != nil)
        }
        SocketCalls.raiseOpenFileLimit()
        let shared = ServerShared(configuration: configuration, router: router, tlsContext: tls)
        let fd: Int32
        let port: Int
        do {
            (fd, port) = try SocketCalls.listen(host: configuration.host, port: configuration.port)
        } catch {
            throw GRPCWireError(error)
        }
        let group: EventLoopGroup
        do {
            group = try EventLoopGroup(count: configuration.eventLoopCount)
        } catch {
            _ = SocketCalls.close(fd)
            throw GRPCWireError(error)
        }
        self.shared = shared
        self.group = group
        self.listenerFD = fd
        self.port = port
        let slot = self.listenerSlot
        Listener.start(fd: fd, registry: shared.registry, group: group, delegate: GRPCListenerDelegate(shared: shared)) {
            slot.id.store($0, ordering: .relaxed)
        }
    }

    deinit { self.group.stop() }

    /// Number of open client connections.
    public var connectionCount: Int { self.shared.openConnections }

    /// Connections refused at the caps and connections closed to make room for new ones, so far.
    public var connectionCapCounts: (refused: Int, evicted: Int) {
        let counts = self.shared.registry.counts
        return (counts.refused, counts.evicted)
    }

    /// Bytes received from clients so far (after TLS), and how many of them the socket read straight into message
    /// buffers (the rest were copied once from the loop's read buffer).
    public var receivedBytes: (total: Int, inPlace: Int) { self.shared.receivedBytes.counts }

    /// Request bytes buffered by all connections now (charged against `serverReceiveBudget`).
    public var bufferedRequestBytes: Int { self.shared.receiveBudget.inUse }

    /// Serves until the calling task is cancelled, then shuts down gracefully (see ``shutdown(gracePeriod:)``).
    public func run(gracePeriod: Duration = .seconds(5)) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(3600)) } catch { break }
        }
        await self.shutdown(gracePeriod: gracePeriod)
    }

    /// Stops accepting, sends GOAWAY on every connection, waits up to `gracePeriod` for calls to finish, then
    /// closes all connections and stops the event loops.
    public func shutdown(gracePeriod: Duration = .seconds(5)) async {
        Listener.stop(loop: self.group.loops[0], id: self.listenerSlot.id.load(ordering: .relaxed))
        for c in self.shared.liveConnections {
            let id = c.handlerID
            c.loop.execute { runner in (runner.handler(id) as? any ServerSideConnection)?.beginDrain(runner: runner) }
        }
        let deadline = ContinuousClock.now.advanced(by: gracePeriod)
        while self.shared.openConnections > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        self.group.stop()
        let stopDeadline = ContinuousClock.now.advanced(by: .seconds(2))
        while self.shared.openConnections > 0 && ContinuousClock.now < stopDeadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// A handler id written once on its loop (the listener's, a channel core's).
final class ListenerSlot: Sendable {
    let id = Atomic<UInt64>(0)
}

/// Received byte counts, added to by every loop thread.
final class ReceivedByteCounts: Sendable {
    private let total = Atomic<Int>(0)
    private let inPlace = Atomic<Int>(0)

    func note(_ count: Int, inPlace: Bool) {
        self.total.wrappingAdd(count, ordering: .relaxed)
        if inPlace { self.inPlace.wrappingAdd(count, ordering: .relaxed) }
    }

    var counts: (total: Int, inPlace: Int) {
        (self.total.load(ordering: .relaxed), self.inPlace.load(ordering: .relaxed))
    }
}
