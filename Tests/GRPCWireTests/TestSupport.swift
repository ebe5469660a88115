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

    /// Runs a process to completion with a time limit; returns (exit code, stdout+stderr).
    static func run(_ executable: String, _ arguments: [String], directory: URL? = nil, timeout: Duration) throws -> (
        Int32, String
    ) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let directory { p.currentDirectoryURL = directory }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = Mutex(Data())
        let reader = Thread {
            let d = out.fileHandleForReading.readDataToEndOfFile()
            data.withLock { $0 = d }
        }
        reader.start()
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while p.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
        }
        p.waitUntilExit()
        while !reader.isFinished { usleep(5_000) }
        return (p.terminationStatus, String(decoding: data.withLock { $0 }, as: UTF8.self))
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
        _ = try? run("/bin/sh", ["-c", script], timeout: .seconds(60))
        // Removed when the test process exits.
        atexit {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("grpcwire-certs-\(getpid())").path
            try? FileManager.default.removeItem(atPath: dir)
        }
        return Certificates(directory: dir)
    }()

    /// A grpcio TestService server process on a free port, stopped by `stop()`.
    final class PythonServer: Sendable {
        let process: Process
        let stdin: Pipe
        let port: Int

        init(tls: Bool) throws {
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
                p.terminate()
                throw InteropFailurePython(output: text)
            }
            self.process = p
            self.stdin = input
            self.port = port
        }

        func stop() {
            try? self.stdin.fileHandleForWriting.close()
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            while self.process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
            if self.process.isRunning { self.process.terminate() }
            self.process.waitUntilExit()
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
