internal import CEpoll
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
        self.streamWindowSize = 8 << 20
        self.connectionWindowSize = 256 << 20
        self.maxFrameSize = 4 << 20
        self.streamSendBufferLimit = 4 << 20
        self.streamReceiveBufferLimit = 8 << 20
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
    /// `maxConnections`, lowered to fit the descriptor limit (so the caps, not EMFILE, decide who is served).
    let connectionCap: Int

    /// One open connection as the registry sees it.
    struct Entry {
        var peer: PeerAddress
        var loop: EventLoop?
        var handlerID: UInt64 = 0
        /// Still waiting for the HTTP/2 preface or the TLS handshake.
        var handshaking = true
        var evicted = false
        let opened: ContinuousClock.Instant
    }

    struct Registry {
        var entries: [Int: Entry] = [:]
        var perPeer: [PeerAddress: Int] = [:]
        var nextKey = 1
        var refused = 0
        var evicted = 0
        /// Entries marked evicted whose connection has not closed yet (they no longer count against the caps).
        var evictedOpen = 0
    }

    private let registry = Mutex(Registry())

    init(configuration: GRPCServerConfiguration, router: GRPCRouter, tlsContext: TLSContext?) {
        self.configuration = configuration
        self.router = router
        self.tlsContext = tlsContext
        self.receiveBudget = ByteBudget(limit: configuration.serverReceiveBudget)
        self.connectionCap = min(configuration.maxConnections, SocketCalls.connectionsForOpenFileLimit())
    }

    /// Outcome of a new connection at the listener.
    enum Admission {
        /// Serve it under `key`; first close `evict` (the oldest connection still in its handshake) if set.
        case admitted(key: Int, evict: (loop: EventLoop, handlerID: UInt64)?)
        /// Over a cap with no handshaking connection to close: refuse the newcomer.
        case refused
    }

    /// Registers a new connection from `peer`, applying the total and per-peer caps.
    func reserve(peer: PeerAddress) -> Admission {
        let config = self.configuration
        return self.registry.withLock { r -> Admission in
            let live = r.entries.count - r.evictedOpen
            let fromPeer = r.perPeer[peer, default: 0]
            var evict: (loop: EventLoop, handlerID: UInt64)?
            if live >= self.connectionCap || fromPeer >= config.maxConnectionsPerPeer {
                let peerOnly = live < self.connectionCap
                var victim: (key: Int, opened: ContinuousClock.Instant)?
                for (key, e) in r.entries where e.handshaking && !e.evicted && e.loop != nil {
                    if peerOnly && e.peer != peer { continue }
                    if victim == nil || e.opened < victim!.opened { victim = (key, e.opened) }
                }
                guard let victim, let entry = r.entries[victim.key], let loop = entry.loop else {
                    r.refused += 1
                    return .refused
                }
                r.entries[victim.key]?.evicted = true
                r.evicted += 1
                r.evictedOpen += 1
                evict = (loop, entry.handlerID)
            }
            let key = r.nextKey
            r.nextKey += 1
            r.entries[key] = Entry(peer: peer, opened: .now)
            r.perPeer[peer] = fromPeer + 1
            return .admitted(key: key, evict: evict)
        }
    }

    func connectionStarted(key: Int, loop: EventLoop, handlerID: UInt64) {
        self.registry.withLock { r in
            r.entries[key]?.loop = loop
            r.entries[key]?.handlerID = handlerID
        }
    }

    /// The connection sent its preface (and finished TLS): it is no longer first in line for eviction.
    func connectionEstablished(key: Int) {
        self.registry.withLock { $0.entries[key]?.handshaking = false }
    }

    func connectionEnded(key: Int) {
        self.registry.withLock { r in
            guard let e = r.entries.removeValue(forKey: key) else { return }
            if e.evicted { r.evictedOpen -= 1 }
            let n = r.perPeer[e.peer, default: 1] - 1
            r.perPeer[e.peer] = n > 0 ? n : nil
        }
    }

    var openConnections: Int { self.registry.withLock { $0.entries.count } }

    /// Connections refused and evicted at the caps so far.
    var capCounts: (refused: Int, evicted: Int) { self.registry.withLock { ($0.refused, $0.evicted) } }

    var liveConnections: [(loop: EventLoop, handlerID: UInt64)] {
        self.registry.withLock { r in r.entries.values.compactMap { e in e.loop.map { ($0, e.handlerID) } } }
    }
}

func closeFD(_ fd: Int32) -> Int32 { Glibc.close(fd) }

/// Accepts connections on loop 0 and hands each to a loop of the group.
final class Listener: LoopHandler {
    let fd: Int32
    let shared: ServerShared
    let group: EventLoopGroup
    var id: UInt64 = 0

    init(fd: Int32, shared: ServerShared, group: EventLoopGroup) {
        self.fd = fd
        self.shared = shared
        self.group = group
    }

    /// Out of descriptors: accepting is paused until then (the level-triggered listener would spin otherwise).
    private var pausedUntil: ContinuousClock.Instant?
    /// A descriptor kept in reserve: freed to accept-and-close one connection when the process is out of them.
    private var spareFD: Int32 = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    /// How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM.
    static let exhaustionBackoff: Duration = .milliseconds(100)

    func handleEvents(_ events: UInt32, runner: LoopRunner) {
        guard self.pausedUntil == nil else { return }
        for _ in 0..<256 {
            var peer = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &peer) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(self.fd, $0, &length) }
            }
            if client < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO, EPERM: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    self.backOff(runner: runner)
                    return
                default: return  // EAGAIN: nothing more pending
                }
            }
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            SocketCalls.setNoDelay(client)
            switch self.shared.reserve(peer: PeerAddress(peer)) {
            case .refused:
                if self.shared.tlsContext == nil { SocketCalls.refuseHTTP2(client, reason: "connection limit reached") }
                _ = Glibc.close(client)
            case .admitted(let key, let evict):
                if let evict {
                    let id = evict.handlerID
                    evict.loop.execute { runner in
                        (runner.handler(id) as? any ServerSideConnection)?.evict(runner: runner)
                    }
                }
                let shared = self.shared
                let sniff = shared.configuration.http1 != nil
                let address = PeerAddress(peer)
                self.group.nextLoop().execute { runner in
                    if sniff {
                        SniffedConnection.start(fd: client, runner: runner, shared: shared, key: key, peer: address)
                    } else {
                        ServerConnection.start(fd: client, runner: runner, shared: shared, key: key, peer: address)
                    }
                }
            }
        }
    }

    /// Out of descriptors or memory: refuse the connection at the head of the queue with the spare descriptor
    /// (so its client learns at once), then stop polling the listener for a moment.
    private func backOff(runner: LoopRunner) {
        if self.spareFD >= 0 {
            _ = Glibc.close(self.spareFD)
            let c = accept(self.fd, nil, nil)
            if c >= 0 { _ = Glibc.close(c) }
            self.spareFD = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
        }
        self.pausedUntil = ContinuousClock.now.advanced(by: Self.exhaustionBackoff)
        runner.modify(fd: self.fd, id: self.id, events: 0)
    }

    func tick(now: ContinuousClock.Instant, runner: LoopRunner) {
        guard let until = self.pausedUntil, now >= until else { return }
        self.pausedUntil = nil
        runner.modify(fd: self.fd, id: self.id, events: EPOLLIN.rawValue)
    }

    func closeForShutdown(runner: LoopRunner) {
        runner.unregister(fd: self.fd, id: self.id)
        _ = Glibc.close(self.fd)
        if self.spareFD >= 0 { _ = Glibc.close(self.spareFD) }
        self.spareFD = -1
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
            try TLSContext(configuration: c, isServer: true, acceptsHTTP1: configuration.http1 != nil)
        }
        SocketCalls.raiseOpenFileLimit()
        let shared = ServerShared(configuration: configuration, router: router, tlsContext: tls)
        let (fd, port) = try SocketCalls.listen(host: configuration.host, port: configuration.port)
        let group: EventLoopGroup
        do {
            group = try EventLoopGroup(count: configuration.eventLoopCount)
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        self.shared = shared
        self.group = group
        self.listenerFD = fd
        self.port = port
        let slot = self.listenerSlot
        group.loops[0].execute { runner in
            let listener = Listener(fd: fd, shared: shared, group: group)
            listener.id = (try? runner.register(fd: fd, events: EPOLLIN.rawValue, handler: listener)) ?? 0
            slot.id.store(listener.id, ordering: .relaxed)
        }
    }

    deinit { self.group.stop() }

    /// Number of open client connections.
    public var connectionCount: Int { self.shared.openConnections }

    /// Connections refused at the caps and connections closed to make room for new ones, so far.
    public var connectionCapCounts: (refused: Int, evicted: Int) { self.shared.capCounts }

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
        let id = self.listenerSlot.id.load(ordering: .relaxed)
        self.group.loops[0].execute { runner in
            (runner.handler(id) as? Listener)?.closeForShutdown(runner: runner)
        }
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

/// The listener's handler id, written once on loop 0.
final class ListenerSlot: Sendable {
    let id = Atomic<UInt64>(0)
}
