/// Zstandard Huffman literals (RFC 8878 §4.2): the tree description (direct or FSE-compressed weights)
/// and the decoding of one or four backward streams.
struct HuffmanTable {
    /// `1 << maxBits` entries: symbol in the high byte, code length in the low byte.
    var entries: [UInt16]
    var maxBits: Int

    static let maxCodeLength = 11

    /// Reads a tree description at the start of `bytes`.
    ///
    /// - Returns: the table and the bytes the description used.
    /// - Throws: `.corrupt`/`.truncated` for malformed weights.
    static func read(_ bytes: UnsafeRawBufferPointer, offset: Int) throws(CompressionError) -> (HuffmanTable, Int) {
        guard bytes.count > 0 else { throw .truncated(what: "Huffman tree description", offset: offset, needed: 1, available: 0) }
        let header = Int(bytes[0])
        var weights: [UInt8] = []
        let used: Int
        if header >= 128 {
            let count = header - 127
            used = 1 + (count + 1) / 2
            guard used <= bytes.count else {
                throw .truncated(what: "Huffman weights", offset: offset + 1, needed: used - 1, available: bytes.count - 1)
            }
            weights.reserveCapacity(count)
            for index in 0..<count {
                let byte = bytes[1 + index / 2]
                weights.append(index & 1 == 0 ? byte >> 4 : byte & 15)
            }
        } else {
            used = 1 + header
            guard used <= bytes.count else {
                throw .truncated(what: "Huffman weights", offset: offset + 1, needed: header, available: bytes.count - 1)
            }
            weights = try self.decodeWeights(UnsafeRawBufferPointer(rebasing: bytes[1..<used]), offset: offset + 1)
        }
        return (try self.build(weights, offset: offset), used)
    }

    /// FSE-compressed weights: a distribution (accuracy ≤ 6) then two interleaved states.
    private static func decodeWeights(_ bytes: UnsafeRawBufferPointer, offset: Int) throws(CompressionError) -> [UInt8] {
        let what = "Huffman weights"
        let (counts, log, size) = try FSETable.readDistribution(bytes, maxLog: 6, maxSymbol: 11, what: what, offset: offset)
        let table = try FSETable.decodingTable(counts, log: log, what: what, offset: offset)
        var stream = try BackwardBitReader(UnsafeRawBufferPointer(rebasing: bytes[size...]), what: what, offset: offset + size)
        var state1 = stream.read(log)
        var state2 = stream.read(log)
        var weights: [UInt8] = []
        weights.reserveCapacity(255)
        while true {
            guard weights.count < 255 else { throw .corrupt(what: what, offset: offset, reason: "more than 255 weights") }
            var entry = table[state1]
            weights.append(entry.symbol)
            state1 = Int(entry.baseline) + stream.read(Int(entry.bits))
            if stream.overflowed {
                weights.append(table[state2].symbol)
                break
            }
            entry = table[state2]
            weights.append(entry.symbol)
            state2 = Int(entry.baseline) + stream.read(Int(entry.bits))
            if stream.overflowed {
                weights.append(table[state1].symbol)
                break
            }
        }
        return weights
    }

    /// Builds the table from the weights of all symbols but the last (whose weight is implied).
    private static func build(_ given: [UInt8], offset: Int) throws(CompressionError) -> HuffmanTable {
        let what = "Huffman tree description"
        guard !given.isEmpty, given.count <= 255 else {
            throw .corrupt(what: what, offset: offset, reason: "\(given.count) weights")
        }
        var total = 0
        for weight in given {
            guard weight <= Self.maxCodeLength else {
                throw .corrupt(what: what, offset: offset, reason: "weight \(weight) exceeds \(Self.maxCodeLength)")
            }
            if weight > 0 { total += 1 << (Int(weight) - 1) }
        }
        guard total > 0 else { throw .corrupt(what: what, offset: offset, reason: "all weights are zero") }
        let maxBits = Int.bitWidth - total.leadingZeroBitCount   // highbit(total) + 1
        guard maxBits <= Self.maxCodeLength else {
            throw .corrupt(what: what, offset: offset, reason: "code length \(maxBits) exceeds \(Self.maxCodeLength)")
        }
        let rest = (1 << maxBits) - total
        guard rest > 0, rest & (rest - 1) == 0 else {
            throw .corrupt(what: what, offset: offset, reason: "weights do not complete a prefix code")
        }
        var weights = given
        weights.append(UInt8(rest.trailingZeroBitCount + 1))
        var rankStart = [Int](repeating: 0, count: Self.maxCodeLength + 2)
        var rankCount = [Int](repeating: 0, count: Self.maxCodeLength + 2)
        for weight in weights where weight > 0 { rankCount[Int(weight)] += 1 }
        var start = 0
        for weight in 1...Self.maxCodeLength {
            rankStart[weight] = start
            start += rankCount[weight] << (weight - 1)
        }
        var entries = [UInt16](repeating: 0, count: 1 << maxBits)
        for (symbol, weight) in weights.enumerated() where weight > 0 {
            let width = 1 << (Int(weight) - 1)
            let bits = maxBits + 1 - Int(weight)
            let entry = UInt16(symbol) << 8 | UInt16(bits)
            let at = rankStart[Int(weight)]
            for index in at..<(at + width) { entries[index] = entry }
            rankStart[Int(weight)] = at + width
        }
        return HuffmanTable(entries: entries, maxBits: maxBits)
    }

    /// Decodes one stream into `output[0..<count]`, which must consume the stream exactly.
    func decodeStream(_ stream: UnsafeRawBufferPointer, into output: UnsafeMutablePointer<UInt8>, count: Int,
                      offset: Int) throws(CompressionError) {
        var reader = try BackwardBitReader(stream, what: "Huffman literal stream", offset: offset)
        let maxBits = self.maxBits
        self.entries.withUnsafeBufferPointer { table in
            var index = 0
            // Four symbols per refill: 4 × 11 bits fit the 57 available.
            while index + 4 <= count {
                reader.refill()
                for lane in 0..<4 {
                    let entry = table[reader.peek(maxBits)]
                    output[index + lane] = UInt8(truncatingIfNeeded: entry >> 8)
                    reader.skip(Int(entry & 0xFF))
                }
                index += 4
            }
            while index < count {
                reader.refill()
                let entry = table[reader.peek(maxBits)]
                output[index] = UInt8(truncatingIfNeeded: entry >> 8)
                reader.skip(Int(entry & 0xFF))
                index += 1
            }
        }
        guard reader.isExactlyConsumed() else {
            throw .corrupt(what: "Huffman literal stream", offset: offset, reason: "the stream's bits do not match \(count) literals")
        }
    }
}
