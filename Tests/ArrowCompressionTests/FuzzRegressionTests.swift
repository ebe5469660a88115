import ArrowCompression
import Foundation
import Testing

/// Replays the fuzz seeds and every input scripts/fuzz-compression ever saved: each decodes to its declared
/// size or throws a CompressionError (a crash fails the whole run).
@Suite struct FuzzRegressionTests {
    static let root = Corpus.fixtures.appendingPathComponent("fuzz")

    static func inputs(_ codec: String) -> [URL] {
        ["corpus", "regressions"].flatMap { kind -> [URL] in
            let directory = Self.root.appendingPathComponent("\(kind)/\(codec)")
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            return names.sorted().map { directory.appendingPathComponent($0) }
        }
    }

    @Test(arguments: ["lz4", "zstd"])
    func fuzzInputsDecodeOrThrow(_ codec: String) throws {
        let files = Self.inputs(codec)
        // The seed corpus is committed: an empty folder means the fixtures are missing, not that all passed.
        #expect(files.count >= 10, "\(files.count) fuzz inputs for \(codec)")
        var decoded = 0
        for file in files {
            let input = [UInt8](try Data(contentsOf: file))
            guard input.count >= 4 else { continue }
            let declared = (Int(input[0]) | Int(input[1]) << 8 | Int(input[2]) << 16) & 0xF_FFFF
            let frame = Array(input[4...])
            do {
                let out = codec == "lz4"
                    ? try LZ4Frame.decompress(frame, decompressedSize: declared, limit: 1 << 20)
                    : try Zstd.decompress(frame, decompressedSize: declared, limit: 1 << 20)
                #expect(out.count == declared)
                decoded += 1
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        // The seeds are valid frames with their true sizes.
        #expect(decoded >= 10)
    }
}
