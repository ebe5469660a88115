/// The LZ4 frame format (lz4_Frame_format.md): magic, frame descriptor, blocks, end mark, optional
/// content checksum. Decoding accepts linked and independent blocks, block and content checksums
/// (verified when present), concatenated and skippable frames. Encoding writes independent 4 MiB blocks
/// with the content size, and a content checksum when asked (Arrow C++ writes none).
public enum LZ4Frame {
    static let magic: UInt32 = 0x184D_2204
    static let encodeBlockSize = 4 << 20

    /// Decompresses LZ4 frames in `input` into exactly `decompressedSize` bytes.
    ///
    /// `decompressedSize` (Arrow's declared uncompressed length) is checked against `limit` before anything
    /// is allocated, and the frames must decode to exactly that many bytes.
    /// - Throws: `.limitExceeded` (declared size over `limit`, or more data than declared), `.sizeMismatch`
    ///   (less data), `.truncated`/`.corrupt` for malformed frames, `.checksumMismatch`.
    public static func decompress(_ input: some ContiguousCollection, decompressedSize: Int,
                                  limit: Int = Int(Int32.max)) throws(CompressionError) -> [UInt8] {
        try Output.make(decompressedSize, limit: limit) { (out) throws(CompressionError) in
            try input.borrow { (bytes) throws(CompressionError) in try self.decompress(bytes, into: out) }
        }
    }

    /// Decompresses LZ4 frames in `input` into `output`, which they must fill exactly.
    ///
    /// - Throws: as ``decompress(_:decompressedSize:limit:)``.
    public static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(CompressionError)
    {
        var reader = InputReader(input)
        var op = 0
        var frames = 0
        repeat {
            let magic = try reader.u32("LZ4 frame magic")
            if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                let size = Int(try reader.u32("LZ4 skippable frame size"))
                _ = try reader.bytes(size, "LZ4 skippable frame")
                continue
            }
            guard magic == self.magic else {
                throw .corrupt(what: "LZ4 frame magic", offset: reader.offset - 4, reason: "0x\(String(magic, radix: 16)) is not 0x184d2204")
            }
            op = try self.decodeFrame(&reader, output, at: op)
            frames += 1
        } while !reader.isAtEnd
        guard op == output.count else { throw .sizeMismatch(declared: output.count, decoded: op) }
    }

    private static func decodeFrame(_ reader: inout InputReader, _ output: UnsafeMutableRawBufferPointer,
                                    at frameStart: Int) throws(CompressionError) -> Int {
        let descriptorStart = reader.offset
        let flags = try reader.u8("LZ4 frame FLG")
        let bd = try reader.u8("LZ4 frame BD")
        guard flags >> 6 == 1 else {
            throw .corrupt(what: "LZ4 frame FLG", offset: descriptorStart, reason: "version \(flags >> 6) is not 1")
        }
        guard flags & 0x02 == 0, bd & 0x8F == 0 else {
            throw .corrupt(what: "LZ4 frame descriptor", offset: descriptorStart, reason: "reserved bits are set")
        }
        let independent = flags & 0x20 != 0
        let blockChecksums = flags & 0x10 != 0
        let hasContentSize = flags & 0x08 != 0
        let contentChecksum = flags & 0x04 != 0
        let blockSizeID = Int(bd >> 4)
        guard blockSizeID >= 4 else {
            throw .corrupt(what: "LZ4 frame BD", offset: descriptorStart + 1, reason: "block size id \(blockSizeID) is not 4...7")
        }
        let maxBlockSize = 1 << (8 + 2 * blockSizeID)
        var contentSize: UInt64?
        if hasContentSize { contentSize = try reader.u64("LZ4 frame content size") }
        if flags & 0x01 != 0 {
            throw .unsupported(what: "LZ4 frames with a dictionary (dictionary id \(try reader.u32("LZ4 dictionary id")))")
        }
        let descriptor = UnsafeRawBufferPointer(rebasing: reader.buffer[descriptorStart..<reader.offset])
        let stored = try reader.u8("LZ4 frame header checksum")
        let computed = UInt8(truncatingIfNeeded: XXHash.hash32(descriptor) >> 8)
        guard stored == computed else {
            throw .checksumMismatch(what: "LZ4 frame header checksum", stored: UInt32(stored), computed: UInt32(computed))
        }
        if let contentSize, contentSize > UInt64(output.count - frameStart) {
            throw .limitExceeded(what: "LZ4 frame content size", limit: output.count - frameStart,
                                 found: contentSize > UInt64(Int.max) ? Int.max : Int(contentSize))
        }
        var op = frameStart
        while true {
            let blockAt = reader.offset
            let header = try reader.u32("LZ4 block size")
            if header == 0 { break }
            let stored = header & 0x8000_0000 != 0
            let size = Int(header & 0x7FFF_FFFF)
            guard size <= maxBlockSize else {
                throw .corrupt(what: "LZ4 block size", offset: blockAt, reason: "\(size) exceeds the frame's block size \(maxBlockSize)")
            }
            let data = try reader.bytes(size, "LZ4 block")
            if blockChecksums {
                let stored = try reader.u32("LZ4 block checksum")
                let computed = XXHash.hash32(data)
                guard stored == computed else {
                    throw .checksumMismatch(what: "LZ4 block checksum at byte \(blockAt)", stored: stored, computed: computed)
                }
            }
            if stored {
                guard size <= output.count - op else {
                    throw .limitExceeded(what: "LZ4 decompressed size", limit: output.count, found: op + size)
                }
                if size > 0, let base = output.baseAddress, let from = data.baseAddress {
                    (base + op).copyMemory(from: from, byteCount: size)
                }
                op += size
            } else {
                let window = UnsafeMutableRawBufferPointer(rebasing: output[0..<min(output.count, op + maxBlockSize)])
                let written = try LZ4Block.decode(data, into: window, at: op, floor: independent ? op : frameStart,
                                                  inputOffset: blockAt + 4)
                op += written
            }
        }
        if contentChecksum {
            let stored = try reader.u32("LZ4 content checksum")
            let computed = XXHash.hash32(UnsafeRawBufferPointer(rebasing: output[frameStart..<op]))
            guard stored == computed else {
                throw .checksumMismatch(what: "LZ4 content checksum", stored: stored, computed: computed)
            }
        }
        if let contentSize, contentSize != UInt64(op - frameStart) {
            throw .corrupt(what: "LZ4 frame", offset: descriptorStart, reason: "content size \(contentSize) declared, \(op - frameStart) decoded")
        }
        return op
    }

    /// The largest frame ``compress(_:)`` can produce for `count` bytes.
    public static func bound(_ count: Int) -> Int {
        let blocks = count / self.encodeBlockSize + 1
        return 4 + 11 + blocks * 4 + LZ4Block.bound(count) + blocks * 16 + 4 + 4
    }

    /// Compresses `input` as one LZ4 frame (independent blocks of 4 MiB, content size, and with `checksum`
    /// the xxHash32 content checksum).
    public static func compress(_ input: some ContiguousCollection, checksum: Bool = false) -> [UInt8] {
        input.withUnsafeBytes { bytes in
            let bound = self.bound(bytes.count)
            let table = UnsafeMutablePointer<Int32>.allocate(capacity: 1 << LZ4Block.hashLog)
            defer { table.deallocate() }
            return [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
                initialized = self.compress(bytes, into: UnsafeMutableRawBufferPointer(buffer), table: table,
                                            checksum: checksum)
            }
        }
    }

    private static func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
                                 table: UnsafeMutablePointer<Int32>, checksum: Bool) -> Int {
        var op = 0
        func put32(_ value: UInt32) {
            output.storeBytes(of: value.littleEndian, toByteOffset: op, as: UInt32.self)
            op += 4
        }
        put32(self.magic)
        let descriptorStart = op
        output[op] = 0x40 | 0x20 | 0x08 | (checksum ? 0x04 : 0)   // version 1, independent blocks, content size
        output[op + 1] = 0x70                       // 4 MiB blocks
        op += 2
        output.storeBytes(of: UInt64(input.count).littleEndian, toByteOffset: op, as: UInt64.self)
        op += 8
        output[op] = UInt8(truncatingIfNeeded: XXHash.hash32(UnsafeRawBufferPointer(rebasing: output[descriptorStart..<op])) >> 8)
        op += 1
        var ip = 0
        while ip < input.count {
            let n = min(self.encodeBlockSize, input.count - ip)
            let block = UnsafeRawBufferPointer(rebasing: input[ip..<(ip + n)])
            let sizeAt = op
            op += 4
            let written = LZ4Block.encode(block, into: UnsafeMutableRawBufferPointer(rebasing: output[op...]), table: table)
            if written >= n {
                // Incompressible: store the block.
                UnsafeMutableRawBufferPointer(rebasing: output[op..<(op + n)]).copyMemory(from: block)
                output.storeBytes(of: (UInt32(n) | 0x8000_0000).littleEndian, toByteOffset: sizeAt, as: UInt32.self)
                op += n
            } else {
                output.storeBytes(of: UInt32(written).littleEndian, toByteOffset: sizeAt, as: UInt32.self)
                op += written
            }
            ip += n
        }
        put32(0)
        if checksum { put32(XXHash.hash32(input)) }
        return op
    }
}

/// Bounds-checked little-endian reads from compressed input; each read succeeds or throws `.truncated`.
struct InputReader {
    let buffer: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }
    init(_ buffer: UnsafeRawBufferPointer, offset: Int) {
        self.buffer = buffer
        self.offset = offset
    }

    var isAtEnd: Bool { self.offset >= self.buffer.count }
    var remaining: Int { self.buffer.count - self.offset }

    private func need(_ count: Int, _ what: String) throws(CompressionError) {
        guard count <= self.buffer.count - self.offset else {
            throw .truncated(what: what, offset: self.offset, needed: count, available: self.buffer.count - self.offset)
        }
    }

    mutating func u8(_ what: String) throws(CompressionError) -> UInt8 {
        try self.need(1, what)
        defer { self.offset += 1 }
        return self.buffer[self.offset]
    }

    mutating func u32(_ what: String) throws(CompressionError) -> UInt32 {
        try self.need(4, what)
        defer { self.offset += 4 }
        return UInt32(littleEndian: self.buffer.loadUnaligned(fromByteOffset: self.offset, as: UInt32.self))
    }

    mutating func u64(_ what: String) throws(CompressionError) -> UInt64 {
        try self.need(8, what)
        defer { self.offset += 8 }
        return UInt64(littleEndian: self.buffer.loadUnaligned(fromByteOffset: self.offset, as: UInt64.self))
    }

    /// Little-endian unsigned integer of `count` (0...8) bytes.
    mutating func uint(_ count: Int, _ what: String) throws(CompressionError) -> UInt64 {
        try self.need(count, what)
        var value: UInt64 = 0
        for index in 0..<count { value |= UInt64(self.buffer[self.offset + index]) << (8 * index) }
        self.offset += count
        return value
    }

    mutating func bytes(_ count: Int, _ what: String) throws(CompressionError) -> UnsafeRawBufferPointer {
        try self.need(count, what)
        defer { self.offset += count }
        return UnsafeRawBufferPointer(rebasing: self.buffer[self.offset..<(self.offset + count)])
    }
}

/// Allocates decompression output after checking the declared size against the limit.
enum Output {
    static func make(_ size: Int, limit: Int,
                     _ body: (UnsafeMutableRawBufferPointer) throws(CompressionError) -> Void) throws(CompressionError) -> [UInt8] {
        guard size >= 0 else { throw .corrupt(what: "declared decompressed size", offset: 0, reason: "\(size) is negative") }
        guard size <= limit else { throw .limitExceeded(what: "declared decompressed size", limit: limit, found: size) }
        var failure: CompressionError?
        let result = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            do throws(CompressionError) {
                try body(UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[0..<size])))
                initialized = size
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return result
    }
}
