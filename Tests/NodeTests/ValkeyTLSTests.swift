import Foundation
import Node
import RESP
import TestProcessSupport
import Testing

/// `valkeys://` against a real TLS server: Debian's redis-server 7 (built with TLS) and certificates made
/// with the openssl CLI for each test.
@Suite struct ValkeyTLSTests {
    static let redisServer = "/usr/bin/redis-server"

    /// A temporary CA, a server certificate for localhost / 127.0.0.1, a client certificate, and a second
    /// (untrusted) CA.
    final class Certificates: Sendable {
        let directory: String
        var ca: String { "\(self.directory)/ca.crt" }
        var otherCA: String { "\(self.directory)/other-ca.crt" }
        var serverCert: String { "\(self.directory)/server.crt" }
        var serverKey: String { "\(self.directory)/server.key" }
        var clientCert: String { "\(self.directory)/client.crt" }
        var clientKey: String { "\(self.directory)/client.key" }

        /// Runs `body` with fresh certificates (made off the cooperative pool); removes them on every path.
        static func with<T>(_ body: (Certificates) async throws -> T) async throws -> T {
            let certificates = try await offPool { try Certificates() }
            defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
            return try await body(certificates)
        }

        private init() throws {
            self.directory = NSTemporaryDirectory() + "valkey-tls-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            try Self.openssl(
                ["req", "-x509"] + ec + [
                    "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ValkeyFlight Test CA",
                ], in: self.directory)
            try Self.openssl(
                ["req", "-x509"] + ec + [
                    "-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "2", "-subj", "/CN=Other CA",
                ], in: self.directory)
            try "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                .write(toFile: "\(self.directory)/server.ext", atomically: true, encoding: .utf8)
            try "extendedKeyUsage=clientAuth\n".write(
                toFile: "\(self.directory)/client.ext", atomically: true, encoding: .utf8)
            for (name, cn) in [("server", "localhost"), ("client", "valkeyflight-client")] {
                try Self.openssl(
                    ["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(cn)"],
                    in: self.directory)
                try Self.openssl(
                    [
                        "x509", "-req", "-in", "\(name).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                        "-out", "\(name).crt", "-days", "2", "-extfile", "\(name).ext",
                    ], in: self.directory)
            }
        }

        static func openssl(_ arguments: [String], in directory: String) throws {
            let result = try SpawnedProcess.runBlocking(
                ChildCommand("/usr/bin/openssl", arguments, directory: directory, stdin: .discard, stdout: .discard,
                             stderr: .pipe), timeout: .seconds(60))
            guard result.status == 0 else {
                throw RedisTLSServerScope.StartFailure(
                    description: "openssl \(arguments.joined(separator: " ")) failed (is Debian's openssl installed?): "
                        + result.stderrText.suffix(600))
            }
        }
    }

    /// Runs `body` with a redis-server listening with TLS only on 127.0.0.1 (no plain TCP; the Unix socket is
    /// only its readiness signal), killed on every path out of `body`.
    static func withTLSServer<T>(
        _ certificates: Certificates, requireClientCertificates: Bool = false,
        _ body: (RedisTLSServerScope.Server) async throws -> T
    ) async throws -> T {
        try await RedisTLSServerScope.with(Self.redisServer, listensOnTCP: true, { port in
            [
                "--port", "0", "--bind", "127.0.0.1", "--tls-port", String(port),
                "--tls-cert-file", certificates.serverCert, "--tls-key-file", certificates.serverKey,
                "--tls-ca-cert-file", certificates.ca, "--tls-auth-clients", requireClientCertificates ? "yes" : "no",
            ]
        }, body)
    }

    /// Certificates and a TLS server for `body`.
    static func withCertificatesAndServer<T>(
        requireClientCertificates: Bool = false,
        _ body: (Certificates, RedisTLSServerScope.Server) async throws -> T
    ) async throws -> T {
        try await Certificates.with { certificates in
            try await Self.withTLSServer(certificates, requireClientCertificates: requireClientCertificates) { server in
                try await body(certificates, server)
            }
        }
    }

    static func client(
        port: Int, factory: ValkeyTLSStreamFactory?, scheme: String = "valkeys"
    ) throws -> RESPClient {
        var configuration = try RESPConfiguration(url: "\(scheme)://127.0.0.1:\(port)")
        configuration.tlsStreamFactory = factory
        configuration.reconnect = .init(maxAttempts: 1)
        configuration.connectTimeout = .seconds(5)
        configuration.commandTimeout = .seconds(20)
        return RESPClient(configuration: configuration)
    }

    /// Runs `body` and returns the one-line description of the RESPError it threw (nil if none).
    static func failure(_ body: () async throws(RESPError) -> Void) async -> String? {
        do throws(RESPError) {
            try await body()
            return nil
        } catch {
            return error.description
        }
    }

    @Test func pingSetGetPipelineAndEvalshaOverTLS() async throws {
        try await Self.withCertificatesAndServer { certificates, server async throws in
            let configuration = try RESPConfiguration.valkey(
                url: "valkeys://127.0.0.1:\(server.port)", caFile: certificates.ca)
            #expect(configuration.useTLS && configuration.tlsStreamFactory != nil)
            let client = RESPClient(configuration: configuration)
            defer { client.close() }
            #expect(try await client.send("PING") == .simpleString(Array("PONG".utf8)))

            let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            #expect(try await client.send("SET", "tls:big", big) == .simpleString(Array("OK".utf8)))
            #expect(try await client.send("GET", "tls:big") == .bulkString(big))

            let commands = (0..<10_000).map { RESPCommand("INCR", "tls:counter\($0 % 7)") }
            let results = try await client.pipeline(commands)
            #expect(results.count == 10_000)
            #expect(results.allSatisfy { (try? $0.get()) != nil })
            #expect(try await client.send("GET", "tls:counter0").integer == 1429)

            let script = RESPScript("return {KEYS[1], ARGV[1]}")
            let reply = try await client.evalScript(script, keys: ["tls:k"], arguments: ["v"])
            #expect(reply == .array([.bulkString(Array("tls:k".utf8)), .bulkString(Array("v".utf8))]))
            #expect(
                try await client.send("EVALSHA", script.sha1, 1, "a", "b")
                    == .array([.bulkString(Array("a".utf8)), .bulkString(Array("b".utf8))]))
        }
    }

    @Test func hostNameVerificationAndWrongCA() async throws {
        try await Self.withCertificatesAndServer { certificates, server async throws in

            // The DNS name in the certificate (SNI + host-name check) instead of the IP address.
            let named = try Self.client(
                port: server.port, factory: ValkeyTLSStreamFactory(caFile: certificates.ca, serverName: "localhost"))
            #expect(try await named.send("PING") == .simpleString(Array("PONG".utf8)))
            named.close()

            let wrongCA = try Self.client(port: server.port, factory: ValkeyTLSStreamFactory(caFile: certificates.otherCA))
            defer { wrongCA.close() }
            let caError = await Self.failure { () throws(RESPError) in _ = try await wrongCA.send("PING") }
            #expect(
                caError?.contains("TLS handshake with 127.0.0.1 failed: certificate verification failed: ") == true,
                "\(caError ?? "no error")")

            let wrongName = try Self.client(
                port: server.port, factory: ValkeyTLSStreamFactory(caFile: certificates.ca, serverName: "wrong.example"))
            defer { wrongName.close() }
            let nameError = await Self.failure { () throws(RESPError) in _ = try await wrongName.send("PING") }
            #expect(
                nameError?.contains("certificate verification failed: hostname mismatch") == true,
                "\(nameError ?? "no error")")

            // System store: our private CA is not in it.
            let system = try Self.client(port: server.port, factory: ValkeyTLSStreamFactory())
            defer { system.close() }
            let systemError = await Self.failure { () throws(RESPError) in _ = try await system.send("PING") }
            #expect(systemError?.contains("certificate verification failed") == true, "\(systemError ?? "no error")")

            // Plain RESP to the TLS port fails cleanly (the server drops the connection).
            let plain = try Self.client(port: server.port, factory: nil, scheme: "valkey")
            defer { plain.close() }
            let plainError = await Self.failure { () throws(RESPError) in _ = try await plain.send("PING") }
            #expect(plainError?.contains("127.0.0.1:\(server.port)") == true, "\(plainError ?? "no error")")

            // valkeys:// without a factory says so.
            let missing = try Self.client(port: server.port, factory: nil)
            defer { missing.close() }
            let missingError = await Self.failure { () throws(RESPError) in _ = try await missing.send("PING") }
            #expect(missingError?.contains("no TLS stream factory") == true)

            #expect(throws: RESPError.self) { try ValkeyTLSStreamFactory(caFile: "\(certificates.directory)/missing.pem") }
            let missingCA = "\(certificates.directory)/missing.pem"
            #expect {
                _ = try RESPConfiguration.valkey(url: "valkeys://127.0.0.1:\(server.port)", caFile: missingCA)
            } throws: { error in
                guard let error = error as? RESPError, case .invalidURL(_, let reason) = error else { return false }
                return reason.contains("load trust roots \(missingCA)")
            }
            // A plain URL ignores the CA file.
            #expect(try RESPConfiguration.valkey(url: "valkey://127.0.0.1:1", caFile: missingCA).tlsStreamFactory == nil)
        }
    }

    @Test func mutualTLS() async throws {
        try await Self.withCertificatesAndServer(requireClientCertificates: true) { certificates, server async throws in
            let withCert = try Self.client(
                port: server.port,
                factory: ValkeyTLSStreamFactory(
                    caFile: certificates.ca, certificateChain: certificates.clientCert, privateKey: certificates.clientKey))
            defer { withCert.close() }
            #expect(try await withCert.send("PING") == .simpleString(Array("PONG".utf8)))

            let without = try Self.client(port: server.port, factory: ValkeyTLSStreamFactory(caFile: certificates.ca))
            defer { without.close() }
            let error = await Self.failure { () throws(RESPError) in _ = try await without.send("PING") }
            // The server refuses the handshake with a "certificate required" alert and closes the connection. In
            // TLS 1.3 the client has finished its side of the handshake by then and has sent HELLO, which the
            // server never reads, so the close turns into a reset, and which reaches the client first is a race:
            // the alert (read before the reset), the reset on a read, or the broken pipe on a write. Those three
            // are correct; anything else (success, a verification failure, a timeout) is not.
            let correct = ["alert certificate required", "(Connection reset by peer)", "(Broken pipe)"]
            #expect(
                error.map { error in correct.contains { error.contains($0) } } == true
                    && error?.contains("127.0.0.1") == true,
                "\(error ?? "no error")")
        }
    }

    @Test func benchValkeyOverTLS() async throws {
        try await Self.withCertificatesAndServer { certificates, server async throws in
            let result = try await CLI.run([
                "bench", "valkey", "--valkey", "valkeys://127.0.0.1:\(server.port)", "--tls-ca", certificates.ca,
                "--clients", "4", "--requests", "2000",
            ])
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.text.split(separator: "\n")
            #expect(lines.last.map { $0.hasSuffix(" ops/s") && (Int($0.dropLast(6)) ?? 0) > 0 } == true, "\(result.text)")

            let untrusted = try await CLI.run([
                "bench", "valkey", "--valkey", "valkeys://127.0.0.1:\(server.port)", "--tls-ca", certificates.otherCA,
                "--clients", "1", "--requests", "10",
            ])
            #expect(
                untrusted.status != 0 && untrusted.stderr.contains("certificate verification failed"), "\(untrusted.stderr)"
            )
        }
    }
}
