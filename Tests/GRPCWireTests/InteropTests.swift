import Foundation
import GRPCInteropService
import GRPCWire
import Testing

/// grpc's interop cases in three directions, over h2c and TLS.
@Suite(.serialized) struct InteropTests {
    static func parseResults(_ output: String) -> [String: Bool] {
        var results: [String: Bool] = [:]
        for line in output.split(separator: "\n") {
            if line.hasPrefix("PASS ") { results[String(line.dropFirst(5))] = true }
            if line.hasPrefix("FAIL ") {
                let name = line.dropFirst(5).split(separator: ":").first.map(String.init) ?? ""
                results[name] = false
            }
        }
        return results
    }

    @Test(arguments: [false, true])
    func grpcioClientAgainstOurServer(tls: Bool) async throws {
        let server = try TestSupport.startServer(tls: tls)
        var args = [TestSupport.fixtures.appendingPathComponent("interop_client.py").path, String(server.port)]
        if tls { args += ["--tls", TestSupport.certificates.ca, "localhost"] }
        let (code, output) = try await TestSupport.run(
            TestSupport.python, args, directory: TestSupport.fixtures, timeout: .seconds(120))
        await server.shutdown(gracePeriod: .seconds(1))
        let results = Self.parseResults(output)
        #expect(code == 0, "\(output)")
        for name in InteropClientCases.all {
            #expect(results[name] == true, "case \(name) (tls: \(tls)): \(output)")
        }
    }

    @Test(arguments: [false, true])
    func ourClientAgainstGrpcioServer(tls: Bool) async throws {
        try await TestSupport.withPythonServer(tls: tls) { server in
            let channel = try TestSupport.channel(port: server.port, tls: tls)
            defer { channel.close() }
            for name in InteropClientCases.all {
                do {
                    try await InteropClientCases.run(name, channel: channel)
                } catch {
                    Issue.record("case \(name) (tls: \(tls)): \(error)")
                }
            }
        }
    }

    @Test(arguments: [false, true])
    func ourClientAgainstOurServer(tls: Bool) async throws {
        let server = try TestSupport.startServer(tls: tls)
        let channel = try TestSupport.channel(port: server.port, tls: tls)
        for name in InteropClientCases.all {
            do {
                try await InteropClientCases.run(name, channel: channel)
            } catch {
                Issue.record("case \(name) (tls: \(tls)): \(error)")
            }
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func mutualTLSRequiresAClientCertificate() async throws {
        let server = try TestSupport.startServer(tls: true, mutualTLS: true)
        let good = try TestSupport.channel(port: server.port, tls: true, clientCertificate: true)
        try await InteropClientCases.run("large_unary", channel: good)
        good.close()
        let anonymous = try TestSupport.channel(port: server.port, tls: true, clientCertificate: false)
        await #expect(throws: GRPCStatus.self) {
            _ = try await anonymous.unary(path: InteropTestService.emptyCall, request: [], timeout: .seconds(10))
        }
        anonymous.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func serverNameMismatchIsRejected() async throws {
        let server = try TestSupport.startServer(tls: true)
        var config = GRPCClientConfiguration(host: "127.0.0.1", port: server.port)
        config.tls = .client(trustRoots: TestSupport.certificates.ca, serverName: "not-the-server.example")
        let channel = try GRPCChannel(configuration: config)
        do {
            _ = try await channel.unary(path: InteropTestService.emptyCall, request: [], timeout: .seconds(10))
            Issue.record("call succeeded despite a wrong server name")
        } catch {
            #expect(error.code == .unavailable, "\(error)")
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
