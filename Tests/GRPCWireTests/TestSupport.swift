import Foundation
import GRPCInteropService
import GRPCWire
import Synchronization
import TestProcessSupport

/// Paths, the Python interpreter and certificates shared by the GRPCWire tests.
enum TestSupport {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures/GRPCWire")

    static var python: String {
        if let p = ProcessInfo.processInfo.environment["VALKEYFLIGHT_PYTHON"], !p.isEmpty { return p }
        return packageRoot.appendingPathComponent(".venv/bin/python").path
    }

    /// Runs blocking `body` (a wait on a child process or a pipe) on a thread of its own, so that async tests
    /// never block the cooperative pool with it (the in-process servers they test need the pool).
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await HelperThread.run(body)
    }

    /// ``offPool(_:)`` for a body that cannot throw.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await HelperThread.run(body)
    }

    /// Runs a process to completion with a time limit; returns (exit code, stdout+stderr). A process still running
    /// at `timeout` is killed (with its process group; the code is then 128 + 9). Waits suspended.
    static func run(_ executable: String, _ arguments: [String], directory: URL? = nil, timeout: Duration) async throws
        -> (Int32, String)
    {
        let child = try SpawnedProcess.spawn(Self.command(executable, arguments, directory: directory))
        if !(await child.waitForExit(within: timeout)) { await child.kill() }
        return (child.result.status, child.result.stdoutText)
    }

    /// ``run(_:_:directory:timeout:)`` blocking the calling thread.
    static func runBlocking(_ executable: String, _ arguments: [String], directory: URL? = nil, timeout: Duration) throws
        -> (Int32, String)
    {
        let child = try SpawnedProcess.spawn(Self.command(executable, arguments, directory: directory))
        if !child.waitForExitBlocking(timeout: timeout) { child.killBlocking() }
        return (child.result.status, child.result.stdoutText)
    }

    private static func command(_ executable: String, _ arguments: [String], directory: URL?) -> ChildCommand {
        ChildCommand(executable, arguments, directory: directory?.path, stdin: .discard, stdout: .pipe, stderr: .stdout)
    }

    /// Test certificates: a CA and a server certificate for `localhost` / 127.0.0.1 (made once with `openssl`).
    struct Certificates: Sendable {
        let directory: String
        var ca: String { self.directory + "/ca.pem" }
        var serverCert: String { self.directory + "/server.pem" }
        var serverKey: String { self.directory + "/server.key" }
        var clientCert: String { self.directory + "/client.pem" }
        var clientKey: String { self.directory + "/client.key" }
    }

    static let certificates: Certificates = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("grpcwire-certs-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(dir)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=grpcwire-test-ca
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \\
                -extfile server.ext
            openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=grpcwire-client
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
            """
        _ = try? runBlocking("/bin/sh", ["-c", script], timeout: .seconds(60))
        // Removed when the test process exits.
        atexit {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("grpcwire-certs-\(getpid())").path
            try? FileManager.default.removeItem(atPath: dir)
        }
        return Certificates(directory: dir)
    }()

    /// Runs `body` with a grpcio TestService server process (it binds port 0 itself and prints the port); the
    /// server is stopped on every path out of `body`.
    static func withPythonServer<T>(tls: Bool, _ body: (PythonServer) async throws -> T) async throws -> T {
        let server = try await PythonServer.start(tls: tls)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// A grpcio TestService server process; create it with ``withPythonServer(tls:_:)``.
    final class PythonServer: Sendable {
        let process: SpawnedProcess
        let port: Int

        private init(process: SpawnedProcess, port: Int) {
            self.process = process
            self.port = port
        }

        /// Starts the server and reads its "PORT n" line (waiting suspended).
        static func start(tls: Bool) async throws -> PythonServer {
            var args = [TestSupport.fixtures.appendingPathComponent("interop_server.py").path]
            if tls { args += ["--tls", TestSupport.certificates.serverCert, TestSupport.certificates.serverKey] }
            let process = try SpawnedProcess.spawn(ChildCommand(TestSupport.python, args, stderr: .pipe))
            // "PORT n" (bounded by the process printing, exiting, or 60 s).
            let line = await process.nextLine(within: .seconds(60)) ?? ""
            guard let portText = line.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines),
                let port = Int(portText)
            else {
                await process.kill()
                throw InteropFailurePython(output: line + process.stdoutText + process.stderrText)
            }
            return PythonServer(process: process, port: port)
        }

        /// Closes its stdin (the server exits on EOF), kills its process group if it has not exited after 5 s,
        /// and waits for the exit suspended.
        func stop() async {
            self.process.closeInput()
            if !(await self.process.waitForExit(within: .seconds(5))) { await self.process.kill() }
        }
    }

    struct InteropFailurePython: Error, CustomStringConvertible {
        let output: String
        var description: String { "python server did not start: \(self.output)" }
    }

    /// Starts our TestService server (optionally TLS).
    static func startServer(
        tls: Bool, mutualTLS: Bool = false, configure: (inout GRPCServerConfiguration) -> Void = { _ in }
    ) throws
        -> GRPCServer
    {
        var config = GRPCServerConfiguration(host: "127.0.0.1", port: 0)
        config.eventLoopCount = 2
        if tls {
            let c = TestSupport.certificates
            config.tls = .server(
                certificateChain: c.serverCert, privateKey: c.serverKey, clientTrustRoots: mutualTLS ? c.ca : nil)
        }
        configure(&config)
        return try GRPCServer(configuration: config, router: InteropTestService.router())
    }

    /// A channel to `port` (TLS verifying `localhost` against the test CA).
    static func channel(port: Int, tls: Bool, clientCertificate: Bool = false) throws -> GRPCChannel {
        var config = GRPCClientConfiguration(host: "127.0.0.1", port: port)
        if tls {
            let c = TestSupport.certificates
            config.tls = .client(
                trustRoots: c.ca, serverName: "localhost", certificateChain: clientCertificate ? c.clientCert : nil,
                privateKey: clientCertificate ? c.clientKey : nil)
        }
        return try GRPCChannel(configuration: config)
    }
}
