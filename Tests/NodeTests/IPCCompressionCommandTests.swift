import ArrowIPC
import Foundation
import Testing

/// `ipc convert --compression` and `ipc inspect` on compressed streams.
@Suite struct IPCCompressionCommandTests {
    static let compressedGolden = CLI.packageRoot.appendingPathComponent(
        "Tests/Fixtures/arrow-testing/data/arrow-ipc-stream/integration/2.0.0-compression/generated_zstd.stream")

    @Test func inspectShowsEachBatchCodecAndSizes() async throws {
        let result = try await CLI.run(["ipc", "inspect", Self.compressedGolden.path])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.text.split(separator: "\n").filter { $0.hasPrefix("  batch ") }
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.contains("codec=ZSTD") && $0.contains("uncompressed=") })
        let json = try await CLI.run(["ipc", "inspect", "--json", Self.compressedGolden.path])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any])
        let batches = try #require(object["batches"] as? [[String: Any]])
        #expect(batches.map { $0["codec"] as? String } == ["ZSTD", "ZSTD"])
    }

    @Test(arguments: ["lz4", "zstd"])
    func convertCompressesOnlyWhenAsked(_ codec: String) async throws {
        let original = [UInt8](try Data(contentsOf: CLI.golden.appendingPathComponent("generated_nested.stream")))
        let compressed = try await CLI.run(["ipc", "convert", "-", "-", "--compression", codec, "--level", "3"], stdin: original)
        #expect(compressed.status == 0, "\(compressed.stderr)")
        var messages = try IPCMessageIterator(compressed.stdout)
        var codecs: [CompressionCodec?] = []
        while let message = try messages.next() {
            if case let .recordBatch(header) = message.message.header { codecs.append(header.compression) }
        }
        #expect(!codecs.isEmpty && codecs.allSatisfy { $0 == (codec == "lz4" ? .lz4Frame : .zstd) })
        // Without --compression the output is uncompressed, whatever the input used.
        let plain = try await CLI.run(["ipc", "convert", "-", "-", "--to", "file"], stdin: compressed.stdout)
        #expect(plain.status == 0, "\(plain.stderr)")
        let inspect = try await CLI.run(["ipc", "inspect", "-"], stdin: plain.stdout)
        #expect(inspect.text.contains("codec=none") && !inspect.text.contains("codec=ZSTD") && !inspect.text.contains("codec=LZ4"))
        var ours = try IPCStreamReader(original)
        let theirs = try IPCFileReader(plain.stdout)
        #expect(try theirs.readAll().map(\.length) == (try ours.readAll().map(\.length)))
    }

    @Test func badCompressionValueIsRejected() async throws {
        let result = try await CLI.run(["ipc", "convert", "a", "b", "--compression", "gzip"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("gzip"))
    }
}
