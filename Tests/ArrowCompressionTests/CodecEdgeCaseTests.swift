import ArrowCompression
import Testing

/// The formats' own edge cases, hand-built from RFC 8878 and the LZ4 frame format, and corrupted reference
/// frames: each is decoded exactly or rejected with a specific error, never a crash.
@Suite struct CodecEdgeCaseTests {
    static let zstdMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]

    @Test func xxHashKnownValues() {
        #expect(XXHash.hash32([UInt8]()) == 0x02CC_5D05)
        #expect(XXHash.hash64([UInt8]()) == 0xEF46_DB37_51D8_E999)
    }

    @Test func zstdZeroLengthFrame() throws {
        // Single segment, 1-byte content size 0, one last raw block of 0 bytes.
        let frame = Self.zstdMagic + [0x20, 0x00, 0x01, 0x00, 0x00]
        #expect(try Zstd.decompress(frame, decompressedSize: 0) == [])
        #expect(throws: CompressionError.sizeMismatch(declared: 1, decoded: 0)) {
            _ = try Zstd.decompress(frame, decompressedSize: 1)
        }
    }

    @Test func zstdRawAndRLEBlocks() throws {
        // Content size 8: a raw block "abc" then a last RLE block of five 'x'.
        let frame = Self.zstdMagic + [0x20, 0x08]
            + [0x18, 0x00, 0x00] + Array("abc".utf8)
            + [0x2B, 0x00, 0x00, UInt8(ascii: "x")]
        #expect(try Zstd.decompress(frame, decompressedSize: 8) == Array("abcxxxxx".utf8))
        // An RLE block larger than the declared output stops before writing.
        let header = 1 | 1 << 1 | 100_000 << 3   // last, RLE, 100 000 bytes
        let bomb = Self.zstdMagic + [0x00, 0x50]
            + [UInt8(header & 0xFF), UInt8((header >> 8) & 0xFF), UInt8(header >> 16), 0]
        #expect(throws: CompressionError.limitExceeded(what: "Zstandard decompressed size", limit: 10, found: 100_000)) {
            _ = try Zstd.decompress(bomb, decompressedSize: 10)
        }
    }

    @Test func zstdReservedBlockTypeAndBitsAreRejected() {
        let reservedType = Self.zstdMagic + [0x20, 0x01, 0x07, 0x00, 0x00]
        #expect(throws: CompressionError.corrupt(what: "Zstandard block header", offset: 6, reason: "reserved block type 3")) {
            _ = try Zstd.decompress(reservedType, decompressedSize: 1)
        }
        let reservedBit = Self.zstdMagic + [0x28, 0x01, 0x01, 0x00, 0x00]
        #expect(throws: CompressionError.corrupt(what: "Zstandard frame header descriptor", offset: 4, reason: "reserved bit is set")) {
            _ = try Zstd.decompress(reservedBit, decompressedSize: 1)
        }
        let dictionary = Self.zstdMagic + [0x21, 0x07, 0x01, 0x01, 0x00, 0x00]
        #expect(throws: CompressionError.unsupported(what: "Zstandard frames with a dictionary (id 7)")) {
            _ = try Zstd.decompress(dictionary, decompressedSize: 1)
        }
    }

    @Test func zstdSkippableFramesAreSkipped() throws {
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 0x03, 0x00, 0x00, 0x00, 1, 2, 3]
        let frame = Self.zstdMagic + [0x20, 0x02, 0x11, 0x00, 0x00, 0x41, 0x42]
        #expect(try Zstd.decompress(skippable + frame + skippable, decompressedSize: 2) == [0x41, 0x42])
    }

    @Test func zstdChecksumMismatch() throws {
        var frame = try Corpus.read("text.checksum.zst")
        frame[frame.count - 1] ^= 0x01
        #expect {
            _ = try Zstd.decompress(frame, decompressedSize: 200_000)
        } throws: { error in
            guard case CompressionError.checksumMismatch(what: "Zstandard content checksum", _, _) = error else { return false }
            return true
        }
    }

    @Test func lz4ChecksumMismatches() throws {
        let frame = try Corpus.read("text.blockchecksum.lz4")
        var content = frame
        content[content.count - 1] ^= 0x01
        #expect {
            _ = try LZ4Frame.decompress(content, decompressedSize: 200_000)
        } throws: { error in
            guard case CompressionError.checksumMismatch(what: "LZ4 content checksum", _, _) = error else { return false }
            return true
        }
        var block = frame
        block[30] ^= 0x01   // inside the first block's data
        #expect {
            _ = try LZ4Frame.decompress(block, decompressedSize: 200_000)
        } throws: { error in
            guard case let CompressionError.checksumMismatch(what, _, _) = error else { return false }
            return what.hasPrefix("LZ4 block checksum")
        }
        var header = frame
        header[5] ^= 0x40   // BD: block size id 4 → 0 changes the header checksum input
        #expect(throws: CompressionError.self) { _ = try LZ4Frame.decompress(header, decompressedSize: 200_000) }
    }

    @Test func lz4ZeroLengthAndStoredBlocks() throws {
        #expect(try LZ4Frame.decompress(try Corpus.read("empty.pyarrow.lz4"), decompressedSize: 0) == [])
        // Incompressible input is stored (high bit of the block size) and decodes back.
        let random = try #require(Corpus.inputs["random"])
        let frame = LZ4Frame.compress(random)
        #expect(frame.count <= random.count + 32)
        #expect(try LZ4Frame.decompress(frame, decompressedSize: random.count) == random)
    }

    @Test func declaredSizeIsCheckedBeforeDecoding() throws {
        let frame = try Corpus.read("text.pyarrow-l1.zst")
        #expect(throws: CompressionError.limitExceeded(what: "declared decompressed size", limit: 1 << 20, found: 1 << 40)) {
            _ = try Zstd.decompress(frame, decompressedSize: 1 << 40, limit: 1 << 20)
        }
        // The frame's content size (200 000) exceeds a smaller declared size: rejected before any block.
        #expect(throws: CompressionError.limitExceeded(what: "Zstandard frame content size", limit: 1000, found: 200_000)) {
            _ = try Zstd.decompress(frame, decompressedSize: 1000)
        }
        let lz4 = try Corpus.read("text.pyarrow.lz4")
        #expect(throws: CompressionError.self) { _ = try LZ4Frame.decompress(lz4, decompressedSize: 1000) }
        #expect(throws: CompressionError.self) { _ = try LZ4Frame.decompress(lz4, decompressedSize: 300_000) }
    }

    /// Every prefix of a few frames is rejected (or, for the whole frame, decoded), never a crash or hang.
    @Test(arguments: ["one.pyarrow-l1.zst", "mixed.pyarrow-l19.zst", "text.checksum.zst", "one.pyarrow.lz4",
                      "mixed.linked.lz4", "text.blockchecksum.lz4"])
    func truncationsAreRejected(_ name: String) throws {
        let frame = try Corpus.read(name)
        let input = try #require(Corpus.input(of: name))
        let step = max(1, frame.count / 300)
        for cut in stride(from: 0, to: frame.count, by: step) {
            let prefix = Array(frame[0..<cut])
            #expect(throws: CompressionError.self, "\(name) cut at \(cut)") {
                if name.hasSuffix(".lz4") {
                    _ = try LZ4Frame.decompress(prefix, decompressedSize: input.count)
                } else {
                    _ = try Zstd.decompress(prefix, decompressedSize: input.count)
                }
            }
        }
    }

    /// Flipped bytes: each frame decodes to something of the declared size or throws.
    @Test(arguments: ["text.pyarrow-l3.zst", "mixed.ultra.zst", "text.hc.lz4"])
    func flippedBytesNeverCrash(_ name: String) throws {
        let frame = try Corpus.read(name)
        let input = try #require(Corpus.input(of: name))
        var g = Corpus.LCG(5)
        for _ in 0..<300 {
            var broken = frame
            let at = Int(g.next() % UInt64(frame.count))
            broken[at] ^= UInt8(truncatingIfNeeded: g.next() | 1)
            do {
                let out = name.hasSuffix(".lz4")
                    ? try LZ4Frame.decompress(broken, decompressedSize: input.count)
                    : try Zstd.decompress(broken, decompressedSize: input.count)
                #expect(out.count == input.count)
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }
}
