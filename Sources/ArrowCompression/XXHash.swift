/// xxHash32 and xxHash64 (the LZ4 frame and Zstandard checksums), written from the xxHash specification.
public enum XXHash {
    private static let p32: (UInt32, UInt32, UInt32, UInt32, UInt32) =
        (2_654_435_761, 2_246_822_519, 3_266_489_917, 668_265_263, 374_761_393)
    private static let p64: (UInt64, UInt64, UInt64, UInt64, UInt64) =
        (11_400_714_785_074_694_791, 14_029_467_366_897_019_727, 1_609_587_929_392_839_161,
         9_650_029_242_287_828_579, 2_870_177_450_012_600_261)

    @inline(__always) private static func rotl(_ x: UInt32, _ r: UInt32) -> UInt32 { (x << r) | (x >> (32 - r)) }
    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    /// xxHash32 of `bytes` with `seed`.
    public static func hash32(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        let (p1, p2, p3, p4, p5) = self.p32
        let count = bytes.count
        var index = 0
        var h: UInt32
        @inline(__always) func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        if count >= 16 {
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            while index <= count - 16 {
                v1 = rotl(v1 &+ u32(index) &* p2, 13) &* p1
                v2 = rotl(v2 &+ u32(index + 4) &* p2, 13) &* p1
                v3 = rotl(v3 &+ u32(index + 8) &* p2, 13) &* p1
                v4 = rotl(v4 &+ u32(index + 12) &* p2, 13) &* p1
                index += 16
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
        } else {
            h = seed &+ p5
        }
        h = h &+ UInt32(truncatingIfNeeded: count)
        while index + 4 <= count {
            h = rotl(h &+ u32(index) &* p3, 17) &* p4
            index += 4
        }
        while index < count {
            h = rotl(h &+ UInt32(bytes[index]) &* p5, 11) &* p1
            index += 1
        }
        h ^= h >> 15
        h = h &* p2
        h ^= h >> 13
        h = h &* p3
        h ^= h >> 16
        return h
    }

    /// xxHash64 of `bytes` with `seed`.
    public static func hash64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var state = XXHash64State(seed: seed)
        state.update(bytes)
        return state.digest()
    }

    /// xxHash32 of an array's bytes.
    public static func hash32(_ bytes: some ContiguousCollection, seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { self.hash32($0, seed: seed) }
    }

    /// xxHash64 of an array's bytes.
    public static func hash64(_ bytes: some ContiguousCollection, seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { self.hash64($0, seed: seed) }
    }

    static var primes64: (UInt64, UInt64, UInt64, UInt64, UInt64) { self.p64 }
}

/// Contiguous byte collections whose bytes can be borrowed (`[UInt8]`, `ArraySlice<UInt8>`).
public protocol ContiguousCollection {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension ContiguousCollection {
    /// Borrows the bytes for a body with typed throws.
    func borrow<R>(_ body: (UnsafeRawBufferPointer) throws(CompressionError) -> R) throws(CompressionError) -> R {
        let result: Result<R, CompressionError> = self.withUnsafeBytes { bytes in
            do throws(CompressionError) { return .success(try body(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

extension Array: ContiguousCollection where Element == UInt8 {}
extension ArraySlice: ContiguousCollection where Element == UInt8 {}

/// Incremental xxHash64 (the Zstandard content checksum is computed as blocks are decoded).
struct XXHash64State {
    private var v1: UInt64, v2: UInt64, v3: UInt64, v4: UInt64
    private let seed: UInt64
    private var total = 0
    private var buffer: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var buffered = 0

    init(seed: UInt64 = 0) {
        let (p1, p2, _, _, _) = XXHash.primes64
        self.seed = seed
        self.v1 = seed &+ p1 &+ p2
        self.v2 = seed &+ p2
        self.v3 = seed
        self.v4 = seed &- p1
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        let (p1, p2, _, _, _) = XXHash.primes64
        return rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) private static func merge(_ acc: UInt64, _ value: UInt64) -> UInt64 {
        let (p1, _, _, p4, _) = XXHash.primes64
        return (acc ^ round(0, value)) &* p1 &+ p4
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        guard count > 0 else { return }
        self.total += count
        var index = 0
        if self.buffered > 0 {
            withUnsafeMutableBytes(of: &self.buffer) { stripe in
                let take = min(32 - self.buffered, count)
                stripe.baseAddress!.advanced(by: self.buffered).copyMemory(from: bytes.baseAddress!, byteCount: take)
                self.buffered += take
                index = take
            }
            guard self.buffered == 32 else { return }
            withUnsafeBytes(of: self.buffer) { self.stripes($0, count: 32) }
            self.buffered = 0
        }
        let whole = (count - index) & ~31
        if whole > 0 {
            self.stripes(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + whole)]), count: whole)
            index += whole
        }
        if index < count {
            withUnsafeMutableBytes(of: &self.buffer) { stripe in
                stripe.baseAddress!.copyMemory(from: bytes.baseAddress!.advanced(by: index), byteCount: count - index)
            }
            self.buffered = count - index
        }
    }

    private mutating func stripes(_ bytes: UnsafeRawBufferPointer, count: Int) {
        var v1 = self.v1, v2 = self.v2, v3 = self.v3, v4 = self.v4
        var index = 0
        while index < count {
            v1 = Self.round(v1, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
            v2 = Self.round(v2, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index + 8, as: UInt64.self)))
            v3 = Self.round(v3, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index + 16, as: UInt64.self)))
            v4 = Self.round(v4, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index + 24, as: UInt64.self)))
            index += 32
        }
        self.v1 = v1
        self.v2 = v2
        self.v3 = v3
        self.v4 = v4
    }

    func digest() -> UInt64 {
        let (p1, p2, p3, p4, p5) = XXHash.primes64
        var h: UInt64
        if self.total >= 32 {
            h = Self.rotl(self.v1, 1) &+ Self.rotl(self.v2, 7) &+ Self.rotl(self.v3, 12) &+ Self.rotl(self.v4, 18)
            h = Self.merge(h, self.v1)
            h = Self.merge(h, self.v2)
            h = Self.merge(h, self.v3)
            h = Self.merge(h, self.v4)
        } else {
            h = self.seed &+ p5
        }
        h = h &+ UInt64(truncatingIfNeeded: self.total)
        let buffered = self.buffered
        withUnsafeBytes(of: self.buffer) { tail in
            var index = 0
            while index + 8 <= buffered {
                h ^= Self.round(0, UInt64(littleEndian: tail.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
                h = Self.rotl(h, 27) &* p1 &+ p4
                index += 8
            }
            if index + 4 <= buffered {
                h ^= UInt64(UInt32(littleEndian: tail.loadUnaligned(fromByteOffset: index, as: UInt32.self))) &* p1
                h = Self.rotl(h, 23) &* p2 &+ p3
                index += 4
            }
            while index < buffered {
                h ^= UInt64(tail[index]) &* p5
                h = Self.rotl(h, 11) &* p1
                index += 1
            }
        }
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }
}
