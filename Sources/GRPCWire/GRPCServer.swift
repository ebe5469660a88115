internal import CEpoll
internal import Glibc
import Synchronization

/// Server settings. Defaults suit loopback Flight traffic; every limit is enforced per connection or stream.
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
    /// Accepted connections beyond this are closed at once.
    public var maxConnections: Int
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
    /// Received-but-unread request bytes per stream before the window stops reopening.
    public var streamReceiveBufferLimit: Int
    /// Send a PING after this much silence from a client (nil: never). A connection whose PING is not answered
    /// within `keepaliveTimeout` is closed.
    public var keepaliveInterval: Duration?
    /// How long a keepalive PING may stay unanswered.
    public var keepaliveTimeout: Duration

    /// Creates a configuration with defaults.
    public init(host: String = "127.0.0.1", port: Int = 0, tls: TLSConfiguration? = nil) {
        self.host = host
        self.port = port
        self.eventLoopCount = EventLoopGroup.defaultCount
        self.tls = tls
        self.maxReceiveMessageSize = Int(Int32.max)
        self.maxConcurrentStreams = 4096
        self.maxConnections = 4096
        self.maxHeaderListSize = 16 << 10
        self.streamWindowSize = 8 << 20
        self.connectionWindowSize = 256 << 20
        self.maxFrameSize = 4 << 20
        self.streamSendBufferLimit = 4 << 20
        self.streamReceiveBufferLimit = 8 << 20
        self.keepaliveInterval = .seconds(7200)
        self.keepaliveTimeout = .seconds(20)
    }
}

/// State shared by the listener, the connections and the public server object.
final class ServerShared: Sendable {
    let configuration: GRPCServerConfiguration
    let router: GRPCRouter
    let tlsContext: TLSContext?
    private let connections = Mutex<[Int: (loop: EventLoop, handlerID: UInt64)]>([:])
    private let count = Atomic<Int>(0)
    private let nextKey = Atomic<Int>(1)

    init(configuration: GRPCServerConfiguration, router: GRPCRouter, tlsContext: TLSContext?) {
        self.configuration = configuration
        self.router = router
        self.tlsContext = tlsContext
    }

    /// Reserves a connection slot; nil when at the limit.
    func reserve() -> Int? {
        let now = self.count.wrappingAdd(1, ordering: .relaxed).newValue
        if now > self.configuration.maxConnections {
            self.count.wrappingSubtract(1, ordering: .relaxed)
            return nil
        }
        return self.nextKey.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    func connectionStarted(key: Int, loop: EventLoop, handlerID: UInt64) {
        self.connections.withLock { $0[key] = (loop, handlerID) }
    }

    func connectionEnded(key: Int) {
        self.connections.withLock { $0[key] = nil }
        self.count.wrappingSubtract(1, ordering: .relaxed)
    }

    var openConnections: Int { self.count.load(ordering: .relaxed) }

    var liveConnections: [(loop: EventLoop, handlerID: UInt64)] { self.connections.withLock { Array($0.values) } }
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

    func handleEvents(_ events: UInt32, runner: LoopRunner) {
        for _ in 0..<256 {
            let client = accept(self.fd, nil, nil)
            if client < 0 { return }
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            SocketCalls.setNoDelay(client)
            guard let key = self.shared.reserve() else {
                _ = Glibc.close(client)
                continue
            }
            let shared = self.shared
            self.group.nextLoop().execute { runner in
                ServerConnection.start(fd: client, runner: runner, shared: shared, key: key)
            }
        }
    }

    func closeForShutdown(runner: LoopRunner) {
        runner.unregister(fd: self.fd, id: self.id)
        _ = Glibc.close(self.fd)
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
            try TLSContext(configuration: c, isServer: true)
        }
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
            c.loop.execute { runner in (runner.handler(id) as? ServerConnection)?.beginDrain(runner: runner) }
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
