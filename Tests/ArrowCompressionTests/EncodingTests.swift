import ArrowCompression
import Foundation
import TestProcessSupport
import Testing

/// Our encoders' output decodes with our decoders and with pyarrow's C codecs, byte for byte.
@Suite struct EncodingTests {
    static let names = Corpus.inputs.keys.sorted()

    @Test(arguments: names)
    func lz4RoundTrips(_ name: String) throws {
        let input = try #require(Corpus.inputs[name])
        let frame = LZ4Frame.compress(input)
        #expect(try LZ4Frame.decompress(frame, decompressedSize: input.count) == input)
        #expect(try LZ4Frame.decompress(LZ4Frame.compress(input, checksum: true), decompressedSize: input.count) == input)
        if name == "zeros" || name == "text" { #expect(frame.count < input.count / 2) }
    }

    @Test(arguments: names, [1, 3])
    func zstdRoundTrips(_ name: String, level: Int) throws {
        let input = try #require(Corpus.inputs[name])
        let frame = Zstd.compress(input, level: level, checksum: level == 3)
        #expect(try Zstd.decompress(frame, decompressedSize: input.count) == input)
        if name == "zeros" || name == "text" || name == "ints" { #expect(frame.count < input.count / 2) }
    }

    /// Each byte distribution the Huffman coder meets: two symbols, all 256, skewed, over 128 symbols.
    @Test(arguments: [2, 17, 128, 129, 200, 256])
    func zstdLiteralAlphabets(_ alphabet: Int) throws {
        var g = Corpus.LCG(UInt64(alphabet))
        let input = (0..<50_000).map { _ in UInt8(truncatingIfNeeded: Int(g.next() % UInt64(alphabet)) * (256 / alphabet)) }
        let frame = Zstd.compress(input)
        #expect(try Zstd.decompress(frame, decompressedSize: input.count) == input)
        try self.checkWithPyarrow("zstd", [("alphabet\(alphabet)", input, frame)])
    }

    /// Thousands of short inputs over small alphabets: every match-boundary case of both match finders
    /// (a match extended past its true end was once caught here).
    @Test func shortInputsRoundTrip() throws {
        var g = Corpus.LCG(99)
        for round in 0..<3000 {
            let count = Int(g.next() % 300)
            let alphabet = 1 + Int(g.next() % 4)
            let input = (0..<count).map { _ in UInt8(truncatingIfNeeded: g.next() % UInt64(alphabet)) &* 0x55 }
            let lz4 = LZ4Frame.compress(input)
            #expect(try LZ4Frame.decompress(lz4, decompressedSize: count) == input, "LZ4 round \(round): \(input)")
            let zstd = Zstd.compress(input)
            #expect(try Zstd.decompress(zstd, decompressedSize: count) == input, "ZSTD round \(round): \(input)")
        }
    }

    @Test func pyarrowDecodesOurFrames() throws {
        var lz4: [(String, [UInt8], [UInt8])] = []
        var zstd: [(String, [UInt8], [UInt8])] = []
        for name in Self.names {
            let input = try #require(Corpus.inputs[name])
            lz4.append((name, input, LZ4Frame.compress(input)))
            lz4.append((name + "-checksum", input, LZ4Frame.compress(input, checksum: true)))
            zstd.append((name, input, Zstd.compress(input)))
            zstd.append((name + "-l3", input, Zstd.compress(input, level: 3, checksum: true)))
        }
        try self.checkWithPyarrow("lz4", lz4)
        try self.checkWithPyarrow("zstd", zstd)
    }

    /// A frame of three 4 MiB blocks (int64 counts, then text and random runs): each block starts a fresh match
    /// table and window, and pyarrow decodes the whole.
    @Test func lz4FramesOfSeveralBlocksRoundTrip() throws {
        let input = Corpus.ints(4_200_000) + Corpus.mixed(2_000_000) + Corpus.text(3_000_000, seed: 7)
        let frame = LZ4Frame.compress(input)
        #expect(frame.count < input.count / 2, "\(frame.count) bytes of \(input.count)")
        #expect(try LZ4Frame.decompress(frame, decompressedSize: input.count) == input)
        try self.checkWithPyarrow("lz4", [("blocks", input, frame)])
    }

    /// Writes each frame, has pyarrow decompress it, and compares with the input.
    func checkWithPyarrow(_ codec: String, _ cases: [(String, [UInt8], [UInt8])]) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vf-compression-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, input, frame) in cases {
            let inURL = directory.appendingPathComponent("\(name).in")
            let outURL = directory.appendingPathComponent("\(name).out")
            try Data(frame).write(to: inURL)
            let result = try SpawnedProcess.runBlocking(ChildCommand(
                Corpus.python,
                [Corpus.fixtures.appendingPathComponent("decompress.py").path, codec, String(input.count), inURL.path,
                 outURL.path], stdin: .discard), timeout: .seconds(120))
            #expect(result.status == 0, "pyarrow rejected our \(codec) frame for \(name): \(result.stderrText)")
            let decoded = [UInt8]((try? Data(contentsOf: outURL)) ?? Data([0xFF]))
            #expect(decoded == input, "pyarrow decoded our \(codec) frame for \(name) differently")
        }
    }
}
