import Foundation
import GRPCInteropService
import GRPCWire
import Synchronization

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
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// ``offPool(_:)`` for a body that cannot throw.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    /// Runs a process to completion with a time limit; returns (exit code, stdout+stderr). The waiting happens
    /// off the cooperative pool.
    static func run(_ executable: String, _ arguments: [String], directory: URL? = nil, timeout: Duration) async throws
        -> (Int32, String)
    {
        try await self.offPool { try self.runBlocking(executable, arguments, directory: directory, timeout: timeout) }
    }

    /// Blocks the calling thread until the process exits (or is killed at `timeout`).
    static func runBlocking(_ executable: String, _ arguments: [String], directory: URL? = nil, timeout: Duration) throws
        -> (Int32, String)
    {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let directory { p.currentDirectoryURL = directory }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        // The output reaches end of file when the process exits; a watchdog kills it at the time limit.
        let finished = Mutex(false)
        let pid = p.processIdentifier
        Thread {
            let deadline = ContinuousClock.now.advanced(by: timeout)
            while ContinuousClock.now < deadline {
                if finished.withLock({ $0 }) { return }
                usleep(50_000)
            }
            if !finished.withLock({ $0 }) { kill(pid, SIGKILL) }
        }.start()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        finished.withLock { $0 = true }
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
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
        let process: Process
        let stdin: Pipe
        let port: Int

        private init(process: Process, stdin: Pipe, port: Int) {
            self.process = process
            self.stdin = stdin
            self.port = port
        }

        /// Starts the server and reads its "PORT n" line, off the cooperative pool.
        static func start(tls: Bool) async throws -> PythonServer {
            try await TestSupport.offPool {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: TestSupport.python)
                var args = [TestSupport.fixtures.appendingPathComponent("interop_server.py").path]
                if tls { args += ["--tls", TestSupport.certificates.serverCert, TestSupport.certificates.serverKey] }
                p.arguments = args
                let input = Pipe()
                let output = Pipe()
                p.standardInput = input
                p.standardOutput = output
                try p.run()
                var line = Data()
                let handle = output.fileHandleForReading
                // Reads "PORT n\n" (bounded by the process printing or exiting).
                while !line.contains(UInt8(ascii: "\n")) {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    line.append(chunk)
                }
                let text = String(decoding: line, as: UTF8.self)
                guard let portText = text.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines),
                    let port = Int(portText)
                else {
                    kill(p.processIdentifier, SIGKILL)
                    throw InteropFailurePython(output: text)
                }
                return PythonServer(process: p, stdin: input, port: port)
            }
        }

        /// Closes its stdin (the server exits on EOF), SIGKILLs it after 5 s, and waits for the exit without
        /// blocking the pool.
        func stop() async {
            try? self.stdin.fileHandleForWriting.close()
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            while self.process.isRunning && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(10))
            }
            if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
            for _ in 0..<1000 where self.process.isRunning { try? await Task.sleep(for: .milliseconds(5)) }
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
