import ArrowCompression
import Testing

/// Frames written by the reference C codecs (pyarrow's pa.Codec, the lz4 and zstd tools) decode to their inputs.
@Suite struct FixtureDecodingTests {
    @Test func fixturesArePresent() {
        // A loop over an empty folder must not pass: the generator writes 69 files.
        #expect(Corpus.frameFiles(".lz4").count >= 25)
        #expect(Corpus.frameFiles(".zst").count >= 40)
    }

    @Test(arguments: Corpus.frameFiles(".lz4"))
    func lz4FramesDecode(_ name: String) throws {
        let frame = try Corpus.read(name)
        let input = try #require(Corpus.input(of: name))
        let decoded = try LZ4Frame.decompress(frame, decompressedSize: input.count)
        #expect(decoded == input, "\(name)")
    }

    @Test(arguments: Corpus.frameFiles(".zst").filter { !$0.contains("window28") })
    func zstdFramesDecode(_ name: String) throws {
        let frame = try Corpus.read(name)
        let input = try #require(Corpus.input(of: name))
        let decoded = try Zstd.decompress(frame, decompressedSize: input.count)
        #expect(decoded == input, "\(name)")
    }

    @Test func windowBeyondTheLimitIsRejected() throws {
        let frame = try Corpus.read("text.window28.zst")
        #expect(throws: CompressionError.limitExceeded(what: "Zstandard window size", limit: 1 << 27, found: 1 << 28)) {
            _ = try Zstd.decompress(frame, decompressedSize: 200_000)
        }
        // A larger configured limit accepts it.
        #expect(try Zstd.decompress(frame, decompressedSize: 200_000, maxWindowSize: 1 << 28) == Corpus.inputs["text"])
    }
}
