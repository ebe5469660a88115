/// Writes a bit stream that ``BackwardBitReader`` reads back: bits accumulate least significant first and
/// are flushed as little-endian bytes; `close()` adds the end marker.
struct BitWriter {
    private let storage: BitWriterStorage
    private var position = 0
    private var container: UInt64 = 0
    private var count = 0

    /// `capacity`: the most bytes the stream will hold (callers bound it from what they write).
    init(capacity: Int) {
        self.storage = BitWriterStorage(capacity: capacity + 16)
    }

    /// Adds the low `bits` (0...56 with ≤ 7 pending) bits of `value`.
    @inline(__always)
    mutating func add(_ value: Int, _ bits: Int) {
        let masked = UInt64(truncatingIfNeeded: value) & ((1 &<< UInt64(bits)) &- 1)
        self.container |= masked &<< UInt64(self.count)
        self.count += bits
        if self.count >= 32 { self.flush() }
    }

    /// Writes the whole bytes pending (one 8-byte store).
    @inline(__always)
    mutating func flush() {
        let whole = self.count >> 3
        precondition(self.position + 8 <= self.storage.capacity, "BitWriter capacity exceeded")
        UnsafeMutableRawPointer(self.storage.bytes + self.position).storeBytes(of: self.container.littleEndian, as: UInt64.self)
        self.position += whole
        self.container = whole == 8 ? 0 : self.container >> UInt64(whole * 8)
        self.count &= 7
    }

    /// Adds the end marker (one set bit) and pads to a byte.
    mutating func close() -> [UInt8] {
        self.add(1, 1)
        self.flush()
        if self.count > 0 {
            self.storage.bytes[self.position] = UInt8(truncatingIfNeeded: self.container)
            self.position += 1
        }
        self.count = 0
        self.container = 0
        return Array(UnsafeBufferPointer(start: self.storage.bytes, count: self.position))
    }
}

/// The bytes of one ``BitWriter``.
final class BitWriterStorage {
    let bytes: UnsafeMutablePointer<UInt8>
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        self.bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
    }

    deinit { self.bytes.deallocate() }
}

/// An FSE encoding table (the inverse of ``FSETable/decodingTable(_:log:what:offset:)``).
struct FSEEncoder {
    struct Transform {
        var deltaBits: Int
        var deltaState: Int
    }

    let log: Int
    let states: [UInt16]
    let transforms: [Transform]

    init(_ counts: [Int16], log: Int) {
        let size = 1 << log
        var spread = [Int](repeating: 0, count: size)
        var high = size - 1
        for (symbol, count) in counts.enumerated() where count == -1 {
            spread[high] = symbol
            high -= 1
        }
        let step = (size >> 1) + (size >> 3) + 3
        var position = 0
        for (symbol, count) in counts.enumerated() where count > 0 {
            for _ in 0..<Int(count) {
                spread[position] = symbol
                repeat { position = (position + step) & (size - 1) } while position > high
            }
        }
        var cumulative = [Int](repeating: 0, count: counts.count + 1)
        for (symbol, count) in counts.enumerated() {
            cumulative[symbol + 1] = cumulative[symbol] + (count == -1 ? 1 : Int(count))
        }
        var next = cumulative
        var states = [UInt16](repeating: 0, count: size)
        for u in 0..<size {
            let symbol = spread[u]
            states[next[symbol]] = UInt16(size + u)
            next[symbol] += 1
        }
        var transforms: [Transform] = []
        for (symbol, count) in counts.enumerated() {
            let p = count == -1 ? 1 : Int(count)
            if p == 0 {
                transforms.append(Transform(deltaBits: ((log + 1) << 16) - size, deltaState: 0))
                continue
            }
            let maxBitsOut = log - (p == 1 ? 0 : (Int.bitWidth - 1 - (p - 1).leadingZeroBitCount))
            let minStatePlus = p << maxBitsOut
            transforms.append(Transform(deltaBits: (maxBitsOut << 16) - minStatePlus, deltaState: cumulative[symbol] - p))
        }
        self.log = log
        self.states = states
        self.transforms = transforms
    }

    /// The first state, for the symbol encoded first (decoded last).
    @inline(__always)
    func initial(_ symbol: Int) -> Int {
        let t = self.transforms[symbol]
        let bits = (t.deltaBits + (1 << 15)) >> 16
        let value = (bits << 16) - t.deltaBits
        return Int(self.states[(value >> bits) + t.deltaState])
    }

    @inline(__always)
    func encode(_ symbol: Int, state: inout Int, into writer: inout BitWriter) {
        let t = self.transforms[symbol]
        let bits = (state + t.deltaBits) >> 16
        writer.add(state, bits)
        state = Int(self.states[(state >> bits) + t.deltaState])
    }

    @inline(__always)
    func finish(_ state: Int, into writer: inout BitWriter) {
        writer.add(state, self.log)
    }
}
