import Glibc
import Synchronization
import Testing

@testable import IOLoop

/// A connection of the test protocol: it echoes what it reads, and counts as established once it read an "E".
final class EchoConnection: ByteStreamHandler {
    let fd: Int32
    let key: Int
    let registry: ConnectionRegistry
    var id: UInt64 = 0
    private var closed = false

    init(fd: Int32, key: Int, registry: ConnectionRegistry) {
        self.fd = fd
        self.key = key
        self.registry = registry
    }

    func readable(runner: LoopRunner) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(self.fd, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard n > 0 else {
            self.close(runner: runner)
            return
        }
        if buffer[0..<n].contains(UInt8(ascii: "E")) { self.registry.connectionEstablished(key: self.key) }
        SocketCalls.sendBestEffort(self.fd, Array(buffer[0..<n]))
    }

    func writable(runner: LoopRunner) {}

    func closeForShutdown(runner: LoopRunner) { self.close(runner: runner) }

    func close(runner: LoopRunner) {
        guard !self.closed else { return }
        self.closed = true
        runner.unregister(fd: self.fd, id: self.id)
        SocketCalls.close(self.fd)
        self.registry.connectionEnded(key: self.key)
    }
}

/// The test protocol's server side: echo connections, a "REFUSED" line for refused clients, evictions recorded.
final class EchoDelegate: ListenerDelegate {
    let registry: ConnectionRegistry
    let evictions = Mutex<[Eviction]>([])

    init(registry: ConnectionRegistry) { self.registry = registry }

    func refuse(fd: Int32) { SocketCalls.sendBestEffort(fd, Array("REFUSED\n".utf8)) }

    func start(fd: Int32, key: Int, peer: PeerAddress, runner: LoopRunner) {
        let connection = EchoConnection(fd: fd, key: key, registry: self.registry)
        do {
            connection.id = try runner.register(fd: fd, events: Readiness.readable, handler: connection)
        } catch {
            SocketCalls.close(fd)
            self.registry.connectionEnded(key: key)
            return
        }
        self.registry.connectionStarted(key: key, loop: runner.loop, handlerID: connection.id)
    }

    func evict(handlerID: UInt64, reason: Eviction, runner: LoopRunner) {
        self.evictions.withLock { $0.append(reason) }
        (runner.handler(handlerID) as? EchoConnection)?.close(runner: runner)
    }
}

/// A blocking TCP client with a receive timeout (every read is bounded in time).
final class RawClient {
    let fd: Int32

    init(port: Int) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw IOLoopError.systemCall(name: "connect", errno: errno) }
    }

    /// Sends `text` and reads what comes back (nil at EOF or after the 10 s receive timeout).
    func roundTrip(_ text: String) -> String? {
        _ = Array(text.utf8).withUnsafeBytes { send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return self.read()
    }

    /// One read: its bytes, or nil at EOF, reset or timeout.
    func read() -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }

    /// Reads until EOF (true) or an error/timeout (false), discarding bytes.
    func readsUntilClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 256)
        for _ in 0..<100 {
            let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
        return false
    }

    deinit { Glibc.close(self.fd) }
}

/// Runs `body` with an echo server on a free loopback port under `policy`, stopped on every path out.
func withEchoServer<T>(
    _ policy: ListenerPolicy, _ body: (Int, ConnectionRegistry, EchoDelegate) async throws -> T
) async throws -> T {
    let (fd, port) = try SocketCalls.listen(host: "127.0.0.1", port: 0)
    let group = try EventLoopGroup(count: 2)
    let registry = ConnectionRegistry(policy: policy)
    let delegate = EchoDelegate(registry: registry)
    let listenerID = Atomic<UInt64>(0)
    Listener.start(fd: fd, registry: registry, group: group, delegate: delegate) {
        listenerID.store($0, ordering: .relaxed)
    }
    defer {
        Listener.stop(loop: group.loops[0], id: listenerID.load(ordering: .relaxed))
        group.stop()
    }
    return try await body(port, registry, delegate)
}

/// Polls `condition` every 10 ms until it holds; false if it did not within `limit`.
func eventually(_ limit: Duration = .seconds(30), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// The listener policies any protocol's server gets from IOLoop: caps that evict the oldest connection still in
/// its handshake (or refuse the newcomer when every connection is established), a per-peer cap, and the
/// handshake timeout.
@Suite struct ListenerTests {
    @Test func atTheCapTheOldestHandshakingConnectionMakesRoom() async throws {
        let policy = ListenerPolicy(maxConnections: 2, maxConnectionsPerPeer: 100, handshakeTimeout: nil)
        try await withEchoServer(policy) { port, registry, delegate in
            let silent = try RawClient(port: port)
            #expect(await eventually { registry.liveConnections.count == 1 })
            let established = try RawClient(port: port)
            #expect(established.roundTrip("E") == "E")
            let newcomer = try RawClient(port: port)
            #expect(newcomer.roundTrip("E1") == "E1", "the newcomer is served")
            #expect(silent.readsUntilClosed(), "the handshaking connection was closed to make room")
            #expect(established.roundTrip("E2") == "E2", "the established connection keeps being served")
            #expect(registry.counts.evicted == 1)
            #expect(delegate.evictions.withLock { $0 } == [.connectionLimit])
        }
    }

    @Test func atTheCapWithEveryConnectionEstablishedTheNewcomerIsRefused() async throws {
        let policy = ListenerPolicy(maxConnections: 2, maxConnectionsPerPeer: 100, handshakeTimeout: nil)
        try await withEchoServer(policy) { port, registry, _ in
            let a = try RawClient(port: port)
            let b = try RawClient(port: port)
            #expect(a.roundTrip("E") == "E")
            #expect(b.roundTrip("E") == "E")
            let refused = try RawClient(port: port)
            #expect(refused.read() == "REFUSED\n", "the refused client hears why")
            #expect(refused.readsUntilClosed())
            #expect(a.roundTrip("Ea") == "Ea")
            #expect(b.roundTrip("Eb") == "Eb")
            #expect(registry.counts.refused == 1)
        }
    }

    @Test func thePerPeerCapAppliesBelowTheTotalCap() async throws {
        let policy = ListenerPolicy(maxConnections: 100, maxConnectionsPerPeer: 1, handshakeTimeout: nil)
        try await withEchoServer(policy) { port, registry, _ in
            let first = try RawClient(port: port)
            #expect(first.roundTrip("E") == "E")
            let second = try RawClient(port: port)
            #expect(second.read() == "REFUSED\n")
            #expect(first.roundTrip("E!") == "E!")
            #expect(registry.counts.refused == 1)
        }
    }

    /// An established connection older than the timeout stays; one that never finishes its handshake is
    /// closed once the timeout passed.
    @Test func connectionsThatNeverFinishTheirHandshakeAreClosedAfterTheTimeout() async throws {
        let policy = ListenerPolicy(maxConnections: 100, maxConnectionsPerPeer: 100, handshakeTimeout: .milliseconds(300))
        try await withEchoServer(policy) { port, registry, delegate in
            let established = try RawClient(port: port)
            #expect(established.roundTrip("E") == "E")
            let started = ContinuousClock.now
            let silent = try RawClient(port: port)
            #expect(silent.readsUntilClosed(), "closed at the handshake timeout")
            #expect(ContinuousClock.now - started >= .milliseconds(300), "not before the timeout")
            #expect(delegate.evictions.withLock { $0 } == [.handshakeTimeout])
            #expect(established.roundTrip("E again") == "E again", "established connections are not timed")
            #expect(registry.counts.timedOut == 1)
        }
    }
}

/// The event loop runs jobs and tasks on its own thread, also jobs handed in from that thread.
@Suite struct EventLoopTests {
    @Test func jobsAndPreferringTasksRunOnTheLoopThread() async throws {
        let group = try EventLoopGroup(count: 1, tickInterval: .milliseconds(10))
        defer { group.stop() }
        let loop = group.loops[0]
        let nested: Bool = await withCheckedContinuation { continuation in
            loop.execute { _ in
                // A job handed in from the loop thread needs no wake-up and still runs.
                loop.execute { _ in continuation.resume(returning: loop.inLoopThread) }
            }
        }
        #expect(nested)
        let onLoop = await Task(executorPreference: loop) { loop.inLoopThread }.value
        #expect(onLoop, "a task preferring the loop runs on its thread")
        #expect(!loop.inLoopThread)
    }

    @Test func byteBudgetsChargeOnlyWithinTheirLimit() {
        let budget = ByteBudget(limit: 100)
        #expect(budget.tryCharge(60))
        #expect(!budget.tryCharge(41))
        #expect(budget.tryCharge(40))
        budget.release(50)
        #expect(budget.inUse == 50)
        #expect(!budget.tryCharge(Int.max), "an overflowing charge is refused")
    }
}
