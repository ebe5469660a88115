/// Zstandard decompression (RFC 8878), from the RFC: frames (and skippable frames), raw, RLE and compressed
/// blocks, Huffman literals, FSE sequences, repeat offsets, content checksums. Dictionaries are rejected.
public enum Zstd {
    static let magic: UInt32 = 0xFD2F_B528
    static let maxBlockSize = 128 << 10

    /// Decompresses Zstandard frames in `input` into exactly `decompressedSize` bytes.
    ///
    /// `decompressedSize` (Arrow's declared uncompressed length) is checked against `limit` before anything
    /// is allocated; a frame's window over `maxWindowSize` is rejected.
    /// - Throws: `.limitExceeded` (declared size over `limit`, window over `maxWindowSize`, more data than
    ///   declared), `.sizeMismatch` (less data), `.truncated`/`.corrupt`, `.checksumMismatch`, `.unsupported`
    ///   (dictionaries).
    public static func decompress(_ input: some ContiguousCollection, decompressedSize: Int, limit: Int = Int(Int32.max),
                                  maxWindowSize: Int = 1 << 27) throws(CompressionError) -> [UInt8] {
        try Output.make(decompressedSize, limit: limit) { (out) throws(CompressionError) in
            try input.borrow { (bytes) throws(CompressionError) in
                try self.decompress(bytes, into: out, maxWindowSize: maxWindowSize)
            }
        }
    }

    /// Decompresses Zstandard frames in `input` into `output`, which they must fill exactly.
    ///
    /// - Throws: as ``decompress(_:decompressedSize:limit:maxWindowSize:)``.
    public static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
                                  maxWindowSize: Int = 1 << 27) throws(CompressionError) {
        var placeholder: UInt8 = 0
        let written: Int = try withUnsafeMutablePointer(to: &placeholder) { (dummy) throws(CompressionError) -> Int in
            let base = output.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? dummy
            var decoder = ZstdDecoder(output: base, capacity: output.count, maxWindowSize: maxWindowSize)
            var reader = InputReader(input)
            repeat {
                let magic = try reader.u32("Zstandard frame magic")
                if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                    let size = Int(try reader.u32("Zstandard skippable frame size"))
                    _ = try reader.bytes(size, "Zstandard skippable frame")
                    continue
                }
                guard magic == self.magic else {
                    throw .corrupt(what: "Zstandard frame magic", offset: reader.offset - 4,
                                   reason: "0x\(String(magic, radix: 16)) is not 0xfd2fb528")
                }
                try decoder.decodeFrame(&reader)
            } while !reader.isAtEnd
            return decoder.written
        }
        guard written == output.count else { throw .sizeMismatch(declared: output.count, decoded: written) }
    }
}

/// The state of one decompression: output position, and the tables and offsets that carry over from
/// block to block within a frame.
struct ZstdDecoder {
    let output: UnsafeMutablePointer<UInt8>
    let capacity: Int
    let maxWindowSize: Int
    private(set) var written = 0
    private var frameStart = 0
    private var huffman: HuffmanTable?
    private var literalLengths: SequenceTable?
    private var offsets: SequenceTable?
    private var matchLengths: SequenceTable?
    private var repeats: (Int, Int, Int) = (1, 4, 8)
    /// The current block's literals: a view of the input (raw literals) or of `scratch` (RLE, Huffman),
    /// with `literalSlack` more bytes readable after them (for word-sized copies).
    private var literalBase: UnsafePointer<UInt8>
    private var literalCount = 0
    private var literalSlack = 0
    private let scratch = LiteralScratch()

    init(output: UnsafeMutablePointer<UInt8>, capacity: Int, maxWindowSize: Int) {
        self.output = output
        self.capacity = capacity
        self.maxWindowSize = maxWindowSize
        self.literalBase = UnsafePointer(self.scratch.bytes)
    }

    mutating func decodeFrame(_ reader: inout InputReader) throws(CompressionError) {
        let headerAt = reader.offset
        let descriptor = try reader.u8("Zstandard frame header descriptor")
        let sizeFlag = Int(descriptor >> 6)
        let singleSegment = descriptor & 0x20 != 0
        guard descriptor & 0x08 == 0 else {
            throw .corrupt(what: "Zstandard frame header descriptor", offset: headerAt, reason: "reserved bit is set")
        }
        let hasChecksum = descriptor & 0x04 != 0
        var windowSize = 0
        if !singleSegment {
            let byte = try reader.u8("Zstandard window descriptor")
            let log = 10 + Int(byte >> 3)
            windowSize = (1 << log) + ((1 << log) >> 3) * Int(byte & 7)
        }
        let dictionaryBytes = [0, 1, 2, 4][Int(descriptor & 3)]
        let dictionary = try reader.uint(dictionaryBytes, "Zstandard dictionary id")
        guard dictionary == 0 else { throw .unsupported(what: "Zstandard frames with a dictionary (id \(dictionary))") }
        var contentSize: UInt64?
        switch sizeFlag {
        case 0: if singleSegment { contentSize = try reader.uint(1, "Zstandard frame content size") }
        case 1: contentSize = try reader.uint(2, "Zstandard frame content size") + 256
        case 2: contentSize = try reader.uint(4, "Zstandard frame content size")
        default: contentSize = try reader.uint(8, "Zstandard frame content size")
        }
        let room = self.capacity - self.written
        if let contentSize {
            guard contentSize <= UInt64(room) else {
                throw .limitExceeded(what: "Zstandard frame content size", limit: room,
                                     found: contentSize > UInt64(Int.max) ? Int.max : Int(contentSize))
            }
            if singleSegment { windowSize = Int(contentSize) }
        }
        // A single-segment frame's window is its content, bounded by the output; others need the check.
        guard singleSegment || windowSize <= self.maxWindowSize else {
            throw .limitExceeded(what: "Zstandard window size", limit: self.maxWindowSize, found: windowSize)
        }
        self.frameStart = self.written
        self.huffman = nil
        self.literalLengths = nil
        self.offsets = nil
        self.matchLengths = nil
        self.repeats = (1, 4, 8)
        let blockLimit = min(max(windowSize, 1), Zstd.maxBlockSize)
        while true {
            let blockAt = reader.offset
            let header = Int(try reader.uint(3, "Zstandard block header"))
            let last = header & 1 != 0
            let type = (header >> 1) & 3
            let size = header >> 3
            switch type {
            case 0:
                let bytes = try reader.bytes(size, "Zstandard raw block")
                try self.reserve(size, limit: blockLimit, at: blockAt)
                if size > 0, let from = bytes.baseAddress {
                    (self.output + self.written).update(from: from.assumingMemoryBound(to: UInt8.self), count: size)
                }
                self.written += size
            case 1:
                let byte = try reader.u8("Zstandard RLE block")
                try self.reserve(size, limit: blockLimit, at: blockAt)
                (self.output + self.written).update(repeating: byte, count: size)
                self.written += size
            case 2:
                guard size <= blockLimit else {
                    throw .corrupt(what: "Zstandard block", offset: blockAt, reason: "size \(size) exceeds the maximum \(blockLimit)")
                }
                let bytes = try reader.bytes(size, "Zstandard compressed block")
                try self.decodeCompressedBlock(bytes, offset: blockAt + 3, limit: blockLimit)
            default:
                throw .corrupt(what: "Zstandard block header", offset: blockAt, reason: "reserved block type 3")
            }
            if last { break }
        }
        let produced = self.written - self.frameStart
        if let contentSize, contentSize != UInt64(produced) {
            throw .corrupt(what: "Zstandard frame", offset: headerAt, reason: "content size \(contentSize) declared, \(produced) decoded")
        }
        if hasChecksum {
            let stored = try reader.u32("Zstandard content checksum")
            let computed = UInt32(truncatingIfNeeded: XXHash.hash64(UnsafeRawBufferPointer(start: self.output + self.frameStart, count: produced)))
            guard stored == computed else {
                throw .checksumMismatch(what: "Zstandard content checksum", stored: stored, computed: computed)
            }
        }
    }

    private func reserve(_ size: Int, limit: Int, at offset: Int) throws(CompressionError) {
        guard size <= limit else {
            throw .corrupt(what: "Zstandard block", offset: offset, reason: "\(size) bytes exceed the maximum block size \(limit)")
        }
        guard size <= self.capacity - self.written else {
            throw .limitExceeded(what: "Zstandard decompressed size", limit: self.capacity, found: self.written + size)
        }
    }

    // MARK: Compressed blocks

    private mutating func decodeCompressedBlock(_ block: UnsafeRawBufferPointer, offset: Int, limit: Int) throws(CompressionError) {
        let literalsUsed = try self.decodeLiterals(block, offset: offset, limit: limit)
        let rest = UnsafeRawBufferPointer(rebasing: block[literalsUsed...])
        try self.decodeSequences(rest, offset: offset + literalsUsed, limit: limit)
    }

    /// Decodes the literals section into `self.literals`; returns the section's size.
    private mutating func decodeLiterals(_ block: UnsafeRawBufferPointer, offset: Int, limit: Int) throws(CompressionError) -> Int {
        var reader = InputReader(block)
        let first = Int(try reader.u8("Zstandard literals section header"))
        let type = first & 3
        let format = (first >> 2) & 3
        if type < 2 {
            var size: Int
            switch format {
            case 0, 2: size = first >> 3
            case 1: size = (first >> 4) + (Int(try reader.u8("Zstandard literals section header")) << 4)
            default: size = (first >> 4) + (Int(try reader.uint(2, "Zstandard literals section header")) << 4)
            }
            guard size <= limit else {
                throw .corrupt(what: "Zstandard literals", offset: offset, reason: "\(size) literals exceed the block maximum \(limit)")
            }
            if type == 0 {
                let bytes = try reader.bytes(size, "Zstandard raw literals")
                self.literalBase = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(self.scratch.bytes)
                self.literalSlack = reader.remaining
            } else {
                let byte = try reader.u8("Zstandard RLE literals")
                self.scratch.bytes.update(repeating: byte, count: size)
                self.literalBase = UnsafePointer(self.scratch.bytes)
                self.literalSlack = LiteralScratch.slack
            }
            self.literalCount = size
            return reader.offset
        }
        let header = Int(try reader.uint(format < 2 ? 2 : format == 2 ? 3 : 4, "Zstandard literals section header")) << 8 | first
        let streams = format == 0 ? 1 : 4
        let regenerated: Int
        let compressed: Int
        switch format {
        case 0, 1:
            regenerated = (header >> 4) & 0x3FF
            compressed = (header >> 14) & 0x3FF
        case 2:
            regenerated = (header >> 4) & 0x3FFF
            compressed = (header >> 18) & 0x3FFF
        default:
            regenerated = (header >> 4) & 0x3FFFF
            compressed = (header >> 22) & 0x3FFFF
        }
        guard regenerated <= limit else {
            throw .corrupt(what: "Zstandard literals", offset: offset, reason: "\(regenerated) literals exceed the block maximum \(limit)")
        }
        let sectionAt = reader.offset
        var data = try reader.bytes(compressed, "Zstandard compressed literals")
        var dataOffset = offset + sectionAt
        if type == 2 {
            let (table, used) = try HuffmanTable.read(data, offset: dataOffset)
            self.huffman = table
            data = UnsafeRawBufferPointer(rebasing: data[used...])
            dataOffset += used
        }
        guard let table = self.huffman else {
            throw .corrupt(what: "Zstandard treeless literals", offset: offset, reason: "no previous Huffman table to repeat")
        }
        let base = self.scratch.bytes
        if streams == 1 {
            try table.decodeStream(data, into: base, count: regenerated, offset: dataOffset)
        } else {
            guard data.count >= 6 else {
                throw .truncated(what: "Zstandard literals jump table", offset: dataOffset, needed: 6, available: data.count)
            }
            let s1 = Int(data[0]) | Int(data[1]) << 8
            let s2 = Int(data[2]) | Int(data[3]) << 8
            let s3 = Int(data[4]) | Int(data[5]) << 8
            let total = s1 + s2 + s3
            guard total <= data.count - 6 else {
                throw .corrupt(what: "Zstandard literals jump table", offset: dataOffset, reason: "streams exceed the section")
            }
            let quarter = (regenerated + 3) / 4
            guard 3 * quarter <= regenerated else {
                throw .corrupt(what: "Zstandard literals", offset: dataOffset, reason: "\(regenerated) literals cannot fill 4 streams")
            }
            let sizes = [s1, s2, s3, data.count - 6 - total]
            var at = 6
            for index in 0..<4 {
                let count = index < 3 ? quarter : regenerated - 3 * quarter
                let stream = UnsafeRawBufferPointer(rebasing: data[at..<(at + sizes[index])])
                try table.decodeStream(stream, into: base + index * quarter, count: count, offset: dataOffset + at)
                at += sizes[index]
            }
        }
        self.literalBase = UnsafePointer(base)
        self.literalCount = regenerated
        self.literalSlack = LiteralScratch.slack
        return reader.offset
    }

    private mutating func decodeSequences(_ section: UnsafeRawBufferPointer, offset: Int, limit: Int) throws(CompressionError) {
        var reader = InputReader(section)
        let first = Int(try reader.u8("Zstandard sequences header"))
        var count: Int
        let blockStart = self.written
        let room = min(limit, self.capacity - blockStart)
        if first == 0 {
            guard reader.isAtEnd else {
                throw .corrupt(what: "Zstandard sequences section", offset: offset, reason: "bytes follow a count of zero")
            }
            guard self.literalCount <= room else {
                throw .limitExceeded(what: "Zstandard decompressed size", limit: self.capacity, found: blockStart + self.literalCount)
            }
            (self.output + blockStart).update(from: self.literalBase, count: self.literalCount)
            self.written += self.literalCount
            return
        } else if first < 128 {
            count = first
        } else if first < 255 {
            count = (first - 128) << 8 + Int(try reader.u8("Zstandard sequences header"))
        } else {
            count = Int(try reader.uint(2, "Zstandard sequences header")) + 0x7F00
        }
        let modesAt = reader.offset
        let modes = Int(try reader.u8("Zstandard symbol compression modes"))
        guard modes & 3 == 0 else {
            throw .corrupt(what: "Zstandard symbol compression modes", offset: offset + modesAt, reason: "reserved bits are set")
        }
        self.literalLengths = try self.table(.literalLength, mode: modes >> 6, &reader, previous: self.literalLengths, base: offset)
        self.offsets = try self.table(.offset, mode: (modes >> 4) & 3, &reader, previous: self.offsets, base: offset)
        self.matchLengths = try self.table(.matchLength, mode: (modes >> 2) & 3, &reader, previous: self.matchLengths, base: offset)
        guard let ll = self.literalLengths, let of = self.offsets, let ml = self.matchLengths else { return }
        let streamAt = offset + reader.offset
        var stream = try BackwardBitReader(UnsafeRawBufferPointer(rebasing: section[reader.offset...]),
                                           what: "Zstandard sequence bit stream", offset: streamAt)
        var repeats = self.repeats
        let output = self.output
        let capacity = self.capacity
        let frameStart = self.frameStart
        let lits = self.literalBase
        let literalCount = self.literalCount
        let literalEnd = literalCount + self.literalSlack
        var op = blockStart
        var lp = 0
        try ll.entries.withUnsafeBufferPointer { (llTable) throws(CompressionError) in
            try of.entries.withUnsafeBufferPointer { (ofTable) throws(CompressionError) in
                try ml.entries.withUnsafeBufferPointer { (mlTable) throws(CompressionError) in
                    var llState = stream.read(ll.log)
                    var ofState = stream.read(of.log)
                    var mlState = stream.read(ml.log)
                    for index in 0..<count {
                        let llEntry = llTable[llState]
                        let ofEntry = ofTable[ofState]
                        let mlEntry = mlTable[mlState]
                        // Two refills a sequence, each followed by at most 57 bits: offset (≤ 31 extra bits) and
                        // match length (≤ 16), then literal length (≤ 16) and the three states (≤ 9 + 9 + 8).
                        stream.refill()
                        let offsetValue = Int(ofEntry.baseValue) &+ stream.readRefilled(Int(ofEntry.extraBits))
                        let match = Int(mlEntry.baseValue) &+ stream.readRefilled(Int(mlEntry.extraBits))
                        stream.refill()
                        let literals = Int(llEntry.baseValue) &+ stream.readRefilled(Int(llEntry.extraBits))
                        var offsetResult: Int
                        if offsetValue > 3 {
                            offsetResult = offsetValue - 3
                            repeats = (offsetResult, repeats.0, repeats.1)
                        } else {
                            let slot = offsetValue - 1 + (literals == 0 ? 1 : 0)
                            switch slot {
                            case 0:
                                offsetResult = repeats.0
                            case 1:
                                offsetResult = repeats.1
                                repeats = (repeats.1, repeats.0, repeats.2)
                            case 2:
                                offsetResult = repeats.2
                                repeats = (repeats.2, repeats.0, repeats.1)
                            default:
                                offsetResult = repeats.0 - 1
                                guard offsetResult > 0 else {
                                    throw .corrupt(what: "Zstandard sequence \(index)", offset: streamAt, reason: "repeat offset 0")
                                }
                                repeats = (offsetResult, repeats.0, repeats.1)
                            }
                        }
                        // Execute: literals, then the match.
                        guard literals <= literalCount - lp else {
                            throw .corrupt(what: "Zstandard sequence \(index)", offset: streamAt, reason: "more literals than the block holds")
                        }
                        guard literals + match <= room - (op - blockStart) else {
                            throw .limitExceeded(what: "Zstandard decompressed size", limit: min(capacity, blockStart + room),
                                                 found: op + literals + match)
                        }
                        if literals <= 16, lp + 16 <= literalEnd, op + 16 <= capacity {
                            let to = UnsafeMutableRawPointer(output + op)
                            let from = UnsafeRawPointer(lits + lp)
                            to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                            to.storeBytes(of: from.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                        } else {
                            (output + op).update(from: lits + lp, count: literals)
                        }
                        op += literals
                        lp += literals
                        guard offsetResult <= op - frameStart else {
                            throw .corrupt(what: "Zstandard sequence \(index)", offset: streamAt,
                                           reason: "offset \(offsetResult) reaches before the start of the frame")
                        }
                        if offsetResult >= 8, op + match + 8 <= capacity {
                            let to = UnsafeMutableRawPointer(output + op)
                            let from = UnsafeRawPointer(output + (op - offsetResult))
                            var copied = 0
                            while copied < match {
                                to.storeBytes(of: from.loadUnaligned(fromByteOffset: copied, as: UInt64.self),
                                              toByteOffset: copied, as: UInt64.self)
                                copied += 8
                            }
                        } else {
                            LZ4Block.copyMatch(output, to: op, offset: offsetResult, length: match)
                        }
                        op += match
                        if index + 1 < count {
                            llState = Int(llEntry.nextBaseline) &+ stream.readRefilled(Int(llEntry.stateBits))
                            mlState = Int(mlEntry.nextBaseline) &+ stream.readRefilled(Int(mlEntry.stateBits))
                            ofState = Int(ofEntry.nextBaseline) &+ stream.readRefilled(Int(ofEntry.stateBits))
                        }
                    }
                }
            }
        }
        self.repeats = repeats
        guard stream.isExactlyConsumed() else {
            throw .corrupt(what: "Zstandard sequence bit stream", offset: streamAt, reason: "the stream's bits do not match \(count) sequences")
        }
        let rest = literalCount - lp
        guard rest <= room - (op - blockStart) else {
            throw .limitExceeded(what: "Zstandard decompressed size", limit: min(capacity, blockStart + room), found: op + rest)
        }
        (output + op).update(from: lits + lp, count: rest)
        self.written = op + rest
    }

    private func table(_ code: SequenceCode, mode: Int, _ reader: inout InputReader, previous: SequenceTable?,
                       base: Int) throws(CompressionError) -> SequenceTable {
        switch mode {
        case 0:
            return try code.predefinedTable()
        case 1:
            let at = base + reader.offset
            return try code.rle(Int(try reader.u8("Zstandard RLE code of \(code.name)")), offset: at)
        case 2:
            let at = base + reader.offset
            let rest = try reader.bytes(reader.remaining, "FSE table of \(code.name)")
            let (counts, log, size) = try FSETable.readDistribution(rest, maxLog: code.maxLog, maxSymbol: code.maxSymbol,
                                                                     what: "FSE table of \(code.name)", offset: at)
            reader = InputReader(reader.buffer, offset: at - base + size)
            return try code.table(counts, log: log, offset: at)
        default:
            guard let previous else {
                throw .corrupt(what: "Zstandard \(code.name) mode", offset: base + reader.offset, reason: "repeat mode without a previous table")
            }
            return previous
        }
    }
}

/// The decoder's literal buffer: one block's worth plus slack for word-sized copies.
final class LiteralScratch {
    static let slack = 32
    let bytes: UnsafeMutablePointer<UInt8>

    init() {
        self.bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: Zstd.maxBlockSize + Self.slack)
        self.bytes.initialize(repeating: 0, count: Zstd.maxBlockSize + Self.slack)
    }

    deinit { self.bytes.deallocate() }
}
