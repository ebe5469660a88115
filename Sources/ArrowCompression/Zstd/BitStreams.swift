/// Reads a Zstandard backward bit stream (RFC 8878 §4.1): the last byte's highest set bit marks the end,
/// bits are read from the end towards the start, most significant first. Reading past the start yields
/// zero bits and marks the stream overflowed, which callers turn into an error.
struct BackwardBitReader {
    private let base: UnsafeRawPointer
    private let small: Bool
    private var position: Int
    private var container: UInt64
    /// Bits of `container` already consumed, counted from its most significant end.
    private(set) var consumed: Int

    /// - Throws: `.corrupt` when the stream is empty or its last byte is zero (no end marker).
    init(_ stream: UnsafeRawBufferPointer, what: String, offset: Int) throws(CompressionError) {
        guard let base = stream.baseAddress, stream.count > 0 else {
            throw .corrupt(what: what, offset: offset, reason: "empty bit stream")
        }
        let last = stream[stream.count - 1]
        guard last != 0 else { throw .corrupt(what: what, offset: offset + stream.count - 1, reason: "bit stream has no end marker") }
        self.base = base
        let marker = last.leadingZeroBitCount + 1
        if stream.count >= 8 {
            self.small = false
            self.position = stream.count - 8
            self.container = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: self.position, as: UInt64.self))
            self.consumed = marker
        } else {
            self.small = true
            self.position = 0
            var value: UInt64 = 0
            for index in 0..<stream.count { value |= UInt64(stream[index]) << (8 * index) }
            self.container = value
            self.consumed = marker + 8 * (8 - stream.count)
        }
    }

    /// Moves the window so that at least 57 bits are available (unless the start is reached).
    @inline(__always)
    mutating func refill() {
        guard !self.small, self.consumed <= 64 else { return }
        let bytes = self.consumed >> 3
        if self.position >= bytes {
            self.position -= bytes
            self.consumed &= 7
        } else {
            self.consumed -= self.position << 3
            self.position = 0
        }
        self.container = UInt64(littleEndian: self.base.loadUnaligned(fromByteOffset: self.position, as: UInt64.self))
    }

    /// The next `count` (0...56) bits without consuming them; zeros beyond the start.
    @inline(__always)
    func peek(_ count: Int) -> Int {
        Int(truncatingIfNeeded: ((self.container &<< UInt64(truncatingIfNeeded: self.consumed)) &>> 1) &>> UInt64(truncatingIfNeeded: 63 - count))
    }

    @inline(__always)
    mutating func skip(_ count: Int) { self.consumed += count }

    /// Reads `count` (0...56) bits, refilling first when needed.
    @inline(__always)
    mutating func read(_ count: Int) -> Int {
        if self.consumed + count > 64 { self.refill() }
        let value = self.consumed >= 64 ? 0 : self.peek(count)
        self.consumed += count
        return value
    }

    /// Reads `count` bits without checking the window: after ``refill()`` at least 57 bits are in it unless the start
    /// is reached, and the caller reads no more than that before refilling again. Bits read past the start are
    /// unspecified (but fewer than `count`), and ``isExactlyConsumed()`` reports the overrun.
    @inline(__always)
    mutating func readRefilled(_ count: Int) -> Int {
        let value = self.peek(count)
        self.consumed &+= count
        return value
    }

    /// True when more bits were read than the stream holds.
    var overflowed: Bool { self.consumed > 64 && (self.small || self.position == 0) }

    /// True when every bit was read, exactly.
    mutating func isExactlyConsumed() -> Bool {
        self.refill()
        return (self.small || self.position == 0) && self.consumed == 64
    }
}

/// Reads bits forward, least significant first (FSE table descriptions, RFC 8878 §4.1.1).
struct ForwardBitReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var bitOffset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// `count` (≤ 24) bits; bits past the end read as zero (callers check ``bytesUsed``).
    mutating func peek(_ count: Int) -> Int {
        var value = 0
        var byte = self.bitOffset >> 3
        var shift = -(self.bitOffset & 7)
        while shift < count {
            if byte < self.bytes.count {
                let part = Int(self.bytes[byte])
                value |= shift >= 0 ? part << shift : part >> -shift
            }
            byte += 1
            shift += 8
        }
        return value & ((1 << count) - 1)
    }

    mutating func skip(_ count: Int) { self.bitOffset += count }

    var bytesUsed: Int { (self.bitOffset + 7) >> 3 }
}
