import Foundation
import Glibc
import RESP
import TestProcessSupport

/// valkey-server and redis-server processes for NodeTests, each living exactly as long as the scope that started
/// it (``RedisTLSServerScope/with(_:_:_:)``): its process group is killed on every path out
/// (``withChildProcess(_:_:)``), so a failing test leaks none.
///
/// Readiness is the server's own Unix socket (in a directory of its own) accepting: the server binds every
/// listener before serving and exits when one fails, so by then its TCP/TLS port is bound too, and a port
/// another process took first shows up as "Address already in use" in its log and is retried with a fresh one.
enum RedisTLSServerScope {
    /// A started server: its TCP or TLS port (0 when it listens on the Unix socket only) and its Unix socket.
    struct Server: Sendable {
        let port: Int
        let unixSocket: String
    }

    struct StartFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs `binary` with `arguments(port)` plus a Unix socket, log file and directory of its own. `listensOnTCP`
    /// false: `arguments` must pass `--port 0`, and no TCP port is involved (no race at all).
    static func with<T>(
        _ binary: String, listensOnTCP: Bool, _ arguments: @escaping @Sendable (Int) -> [String],
        _ body: (Server) async throws -> T
    ) async throws -> T {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw StartFailure(description: "\(binary) not found; run scripts/bootstrap")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vf-redis-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socketPath = "\(directory)/server.sock"
        let logPath = "\(directory)/server.log"
        for _ in 0..<8 {
            let port = listensOnTCP ? Self.freePort() : 0
            try? FileManager.default.removeItem(atPath: logPath)
            let command = ChildCommand(
                binary,
                arguments(port) + [
                    "--unixsocket", socketPath, "--unixsocketperm", "700", "--dir", directory, "--logfile", logPath,
                    "--save", "", "--appendonly", "no",
                ], stdin: .discard, stdout: .discard, stderr: .discard)
            let outcome = try await withChildProcess(command) { process -> Readiness<T> in
                let outcome: Readiness<T> = await Self.waitUntilReady(process, socketPath: socketPath)
                if case .ready = outcome { return .finished(try await body(Server(port: port, unixSocket: socketPath))) }
                return outcome
            }
            if case let .finished(result) = outcome { return result }
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if listensOnTCP && log.contains("Address already in use") { continue }
            throw StartFailure(description: "\(binary) did not start (\(outcome)): \(log.suffix(600))")
        }
        throw StartFailure(description: "\(binary): 8 ports in a row were taken before it bound them")
    }

    private enum Readiness<T> { case ready, exited, timedOut, finished(T) }

    private static func waitUntilReady<T>(_ process: SpawnedProcess, socketPath: String) async -> Readiness<T> {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if !process.isRunning { return .exited }
            if Self.unixSocketAccepts(socketPath) { return .ready }
            try? await Task.sleep(for: .milliseconds(10))
        }
        // Once more after the deadline: a starved task (CPU-bound tests hold the pool) may wake only after it.
        if process.isRunning && Self.unixSocketAccepts(socketPath) { return .ready }
        return .timedOut
    }

    /// A loopback port nobody listens on at this instant (a server may still lose it; ``with(_:listensOnTCP:_:_:)``
    /// retries then).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func unixSocketAccepts(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let utf8 = Array(path.utf8)
        guard utf8.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in utf8.enumerated() { raw[i] = byte }
            raw[utf8.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        } == 0
    }
}
