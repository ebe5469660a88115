/// Huffman coding of a block's literals for the Zstandard encoder: code lengths limited to 11 bits, the
/// tree description (direct or FSE-compressed weights), and one or four streams.
struct HuffmanEncoder {
    /// Code and length per byte value (length 0 = absent).
    var codes: [UInt16]
    var lengths: [UInt8]
    var description: [UInt8]

    /// A code for `literals`, or nil when Huffman coding cannot help (one symbol, or the weights do not fit).
    init?(literals: UnsafeBufferPointer<UInt8>) {
        var counts = [Int](repeating: 0, count: 256)
        for byte in literals { counts[Int(byte)] += 1 }
        var lengths = [UInt8](repeating: 0, count: 256)
        var distinct = 0
        var last = 0
        for symbol in 0..<256 where counts[symbol] > 0 {
            distinct += 1
            last = symbol
        }
        guard distinct >= 2 else { return nil }
        var scaled = counts
        while true {
            let depths = Self.depths(scaled)
            if depths.max() ?? 0 <= HuffmanTable.maxCodeLength {
                lengths = depths
                break
            }
            scaled = scaled.map { $0 == 0 ? 0 : max(1, $0 >> 1) }
        }
        let maxBits = Int(lengths.max() ?? 0)
        var weights = [UInt8](repeating: 0, count: last + 1)
        for symbol in 0...last where lengths[symbol] > 0 { weights[symbol] = UInt8(maxBits + 1 - Int(lengths[symbol])) }
        // Canonical codes in the decoder's order: by weight ascending, then by symbol.
        var rankCount = [Int](repeating: 0, count: HuffmanTable.maxCodeLength + 2)
        for weight in weights where weight > 0 { rankCount[Int(weight)] += 1 }
        var rankStart = [Int](repeating: 0, count: HuffmanTable.maxCodeLength + 2)
        var start = 0
        for weight in 1...HuffmanTable.maxCodeLength {
            rankStart[weight] = start
            start += rankCount[weight] << (weight - 1)
        }
        var codes = [UInt16](repeating: 0, count: 256)
        for symbol in 0...last where weights[symbol] > 0 {
            let weight = Int(weights[symbol])
            codes[symbol] = UInt16(rankStart[weight] >> (weight - 1))
            rankStart[weight] += 1 << (weight - 1)
        }
        let given = Array(weights[0..<last])
        if let compressed = Self.compressWeights(given) {
            self.description = [UInt8(compressed.count)] + compressed
        } else if given.count <= 128 {
            var description = [UInt8(127 + given.count)]
            var index = 0
            while index < given.count {
                let high = given[index]
                let low = index + 1 < given.count ? given[index + 1] : 0
                description.append(high << 4 | low)
                index += 2
            }
            self.description = description
        } else {
            return nil
        }
        self.codes = codes
        self.lengths = lengths
    }

    /// Huffman code lengths (tree depths) for nonzero `counts`.
    private static func depths(_ counts: [Int]) -> [UInt8] {
        var leaves: [(count: Int, node: Int)] = []
        for (symbol, count) in counts.enumerated() where count > 0 { leaves.append((count, symbol)) }
        leaves.sort { $0.count < $1.count || ($0.count == $1.count && $0.node < $1.node) }
        // Nodes 0..<256 are leaves, 256... internal; parent[-] links.
        var parent = [Int](repeating: -1, count: 512)
        var internalCounts: [Int] = []
        var leafIndex = 0
        var internalIndex = 0
        func take() -> (Int, Int) {
            if internalIndex >= internalCounts.count
                || (leafIndex < leaves.count && leaves[leafIndex].count <= internalCounts[internalIndex]) {
                defer { leafIndex += 1 }
                return (leaves[leafIndex].count, leaves[leafIndex].node)
            }
            defer { internalIndex += 1 }
            return (internalCounts[internalIndex], 256 + internalIndex)
        }
        for _ in 0..<(leaves.count - 1) {
            let (a, na) = take()
            let (b, nb) = take()
            let node = 256 + internalCounts.count
            internalCounts.append(a + b)
            parent[na] = node
            parent[nb] = node
        }
        var depths = [UInt8](repeating: 0, count: 256)
        var internalDepth = [Int](repeating: 0, count: internalCounts.count)
        if internalCounts.count > 0 {
            for index in stride(from: internalCounts.count - 2, through: 0, by: -1) {
                internalDepth[index] = internalDepth[parent[256 + index] - 256] + 1
            }
        }
        for leaf in leaves {
            depths[leaf.node] = UInt8(min(255, internalDepth[parent[leaf.node] - 256] + 1))
        }
        return depths
    }

    /// FSE-compressed weights (accuracy 6, two interleaved states), or nil if not smaller than 128 bytes.
    private static func compressWeights(_ weights: [UInt8]) -> [UInt8]? {
        guard weights.count >= 2 else { return nil }
        var counts = [Int](repeating: 0, count: 13)
        for weight in weights { counts[Int(weight)] += 1 }
        let maxWeight = counts.lastIndex { $0 > 0 } ?? 0
        guard counts.max() ?? 0 < weights.count else { return nil }   // one value: no FSE state changes
        let log = 6
        guard let normalized = FSENormalizer.normalize(Array(counts[0...maxWeight]), total: weights.count, log: log) else {
            return nil
        }
        var header = FSENormalizer.writeDistribution(normalized, log: log)
        let encoder = FSEEncoder(normalized, log: log)
        var writer = BitWriter(capacity: weights.count)
        var index = weights.count
        var state1: Int
        var state2: Int
        if weights.count & 1 == 1 {
            state1 = encoder.initial(Int(weights[index - 1]))
            state2 = encoder.initial(Int(weights[index - 2]))
            index -= 2
            index -= 1
            encoder.encode(Int(weights[index]), state: &state1, into: &writer)
        } else {
            state2 = encoder.initial(Int(weights[index - 1]))
            state1 = encoder.initial(Int(weights[index - 2]))
            index -= 2
        }
        while index > 0 {
            index -= 1
            encoder.encode(Int(weights[index]), state: &state2, into: &writer)
            index -= 1
            encoder.encode(Int(weights[index]), state: &state1, into: &writer)
        }
        encoder.finish(state2, into: &writer)
        encoder.finish(state1, into: &writer)
        header += writer.close()
        guard header.count < 128, weights.count > 128 || header.count < (weights.count + 1) / 2 else { return nil }
        return header
    }

    /// The size in bytes of `count` literals coded with this table (without the description).
    func estimate(_ literals: UnsafeBufferPointer<UInt8>) -> Int {
        var bits = 0
        for byte in literals { bits += Int(self.lengths[Int(byte)]) }
        return (bits + 7) / 8
    }

    /// One stream: literals written last-to-first so that the decoder reads them first-to-last.
    func encodeStream(_ literals: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var writer = BitWriter(capacity: literals.count * 2 + 8)   // at most 11 bits per literal
        var index = literals.count
        self.codes.withUnsafeBufferPointer { codes in
            self.lengths.withUnsafeBufferPointer { lengths in
                while index > 0 {
                    index -= 1
                    let symbol = Int(literals[index])
                    writer.add(Int(codes[symbol]), Int(lengths[symbol]))
                }
            }
        }
        return writer.close()
    }
}

/// Normalizing counts to an FSE table and writing the table description (the inverse of
/// ``FSETable/readDistribution(_:maxLog:maxSymbol:what:offset:)``).
enum FSENormalizer {
    /// Counts scaled to sum to `1 << log`, every present symbol at least 1; nil if impossible.
    static func normalize(_ counts: [Int], total: Int, log: Int) -> [Int16]? {
        let size = 1 << log
        let present = counts.filter { $0 > 0 }.count
        guard present <= size, present >= 2 else { return nil }
        var normalized = counts.map { count -> Int in
            count == 0 ? 0 : max(1, (count * size + total / 2) / total)
        }
        var sum = normalized.reduce(0, +)
        while sum != size {
            // Adjust the largest entry that can move.
            var best = -1
            for (index, value) in normalized.enumerated() where value > (sum > size ? 1 : 0) {
                if best < 0 || value > normalized[best] { best = index }
            }
            guard best >= 0 else { return nil }
            if sum > size {
                let step = min(sum - size, normalized[best] - 1)
                normalized[best] -= step
                sum -= step
            } else {
                normalized[best] += size - sum
                sum = size
            }
        }
        return normalized.map { Int16($0) }
    }

    static func writeDistribution(_ counts: [Int16], log: Int) -> [UInt8] {
        var out: [UInt8] = []
        var container = 0
        var bitCount = 0
        func put(_ value: Int, _ bits: Int) {
            container |= value << bitCount
            bitCount += bits
            while bitCount >= 8 {
                out.append(UInt8(truncatingIfNeeded: container))
                container >>= 8
                bitCount -= 8
            }
        }
        put(log - 5, 4)
        var remaining = (1 << log) + 1
        var threshold = 1 << log
        var bits = log + 1
        var symbol = 0
        var previousZero = false
        while symbol < counts.count && remaining > 1 {
            if previousZero {
                var start = symbol
                while symbol < counts.count && counts[symbol] == 0 { symbol += 1 }
                while symbol >= start + 3 {
                    put(3, 2)
                    start += 3
                }
                put(symbol - start, 2)
            }
            var count = Int(counts[symbol])
            symbol += 1
            let maxValue = (2 * threshold - 1) - remaining
            remaining -= abs(count)
            count += 1
            if count >= threshold { count += maxValue }
            put(count, bits - (count < maxValue ? 1 : 0))
            previousZero = count == 1
            while remaining < threshold {
                bits -= 1
                threshold >>= 1
            }
        }
        if bitCount > 0 { out.append(UInt8(truncatingIfNeeded: container)) }
        return out
    }
}
