import ArrowIPC
import Foundation
import TestProcessSupport
import Testing

/// The `valkeyflight` binary as users run it (built beside the test bundle by `swift build --build-tests`).
enum CLI {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let golden = packageRoot
        .appendingPathComponent("Tests/Fixtures/arrow-testing/data/arrow-ipc-stream/integration/cpp-21.0.0")

    static var binary: URL {
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundleDirectory, bundleDirectory.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("valkeyflight")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return packageRoot.appendingPathComponent(".build/debug/valkeyflight")
    }

    struct Result: Sendable {
        var status: Int32
        var stdout: [UInt8]
        var stderr: String
        var text: String { String(decoding: self.stdout, as: UTF8.self) }
    }

    /// Runs the binary to completion with `stdin`, suspended (no thread of the cooperative pool is held); a run
    /// longer than `timeout` is killed and throws.
    static func run(
        _ arguments: [String], stdin: [UInt8] = [], environment: [String: String] = [:], timeout: Duration = .seconds(300)
    ) async throws -> Result {
        let result = try await SpawnedProcess.run(
            ChildCommand(self.binary.path, arguments, environment: environment), stdin: stdin, timeout: timeout)
        return Result(status: result.status, stdout: result.stdout, stderr: result.stderrText)
    }
}

@Suite struct IPCCommandTests {
    @Test func inspectPrintsSchemaBatchesRowsAndBytes() async throws {
        let file = CLI.golden.appendingPathComponent("generated_dictionary.stream")
        let result = try await CLI.run(["ipc", "inspect", file.path])
        #expect(result.status == 0, "\(result.stderr)")
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int
        #expect(result.text == """
            format: stream
            schema (3 fields):
              dict0: dictionary<values=string, indices=int8>
              dict1: dictionary<values=string, indices=int32>
              dict2: dictionary<values=int64, indices=int16>
            record batches: 2
            dictionary batches: 3
            rows: 17
            bytes: \(size ?? -1)
              batch 0: rows=7 codec=none body=80 uncompressed=52
              batch 1: rows=10 codec=none body=104 uncompressed=76

            """)
    }

    @Test func inspectJSONIsMachineReadable() async throws {
        let result = try await CLI.run(["ipc", "inspect", "--json", CLI.golden.appendingPathComponent("generated_primitive.arrow_file").path])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: Any])
        #expect(object["format"] as? String == "file")
        #expect((object["fields"] as? [[String: Any]])?.count == 22)
        #expect(object["rows"] as? Int == 37)
        #expect(object["record_batches"] as? Int == 2)
    }

    @Test func convertThroughStdinAndStdoutRoundTrips() async throws {
        let original = [UInt8](try Data(contentsOf: CLI.golden.appendingPathComponent("generated_nested.stream")))
        let asFile = try await CLI.run(["ipc", "convert", "-", "-", "--to", "file"], stdin: original)
        #expect(asFile.status == 0, "\(asFile.stderr)")
        #expect(IPCFormat.detect(asFile.stdout) == .file)
        // The output format may also come from the environment.
        let backToStream = try await CLI.run(["ipc", "convert", "-", "-"], stdin: asFile.stdout, environment: ["VALKEYFLIGHT_TO": "stream"])
        #expect(backToStream.status == 0, "\(backToStream.stderr)")
        var ours = try IPCStreamReader(backToStream.stdout)
        var theirs = try IPCStreamReader(original)
        #expect(ours.schema == theirs.schema)
        #expect(try ours.readAll().map(\.length) == (try theirs.readAll().map(\.length)))
    }

    @Test func convertWritesFiles() async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("vf-\(UUID().uuidString).arrow")
        defer { try? FileManager.default.removeItem(at: output) }
        let result = try await CLI.run(["ipc", "convert", CLI.golden.appendingPathComponent("generated_map.stream").path, output.path, "--to", "file"])
        #expect(result.status == 0, "\(result.stderr)")
        let reader = try IPCFileReader([UInt8](try Data(contentsOf: output)))
        #expect(reader.recordBatchCount == 2)
    }

    @Test(arguments: [
        (["ipc", "inspect", "/nonexistent/file.arrows"], "valkeyflight: error: cannot open '/nonexistent/file.arrows': No such file or directory\n"),
        (["ipc", "convert", "a", "b", "--to", "parquet"], "valkeyflight: error: The value 'parquet' is invalid for '--to <to>'\n"),
        (["ipc", "frobnicate"], "valkeyflight: error: Unexpected argument 'frobnicate'\n"),
    ])
    func badInputGivesOneLineAndNonZeroExit(arguments: [String], message: String) async throws {
        let result = try await CLI.run(arguments)
        #expect(result.status != 0)
        #expect(result.stderr == message)
        #expect(result.stdout.isEmpty)
    }

    @Test func malformedDataIsRejectedWithTheReason() async throws {
        let garbage = [UInt8]("this is not arrow at all, just text".utf8)
        let result = try await CLI.run(["ipc", "inspect", "-"], stdin: garbage)
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("valkeyflight: error: "))
        #expect(result.stderr.filter { $0 == "\n" }.count == 1)
    }

    @Test func helpAndVersion() async throws {
        let help = try await CLI.run(["--help"])
        #expect(help.status == 0 && help.text.contains("USAGE: valkeyflight"))
        let version = try await CLI.run(["--version"])
        #expect(version.status == 0 && version.text.contains("libnghttp2 1."))
    }
}
