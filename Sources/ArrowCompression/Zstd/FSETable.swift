/// One state of an FSE decoding table (RFC 8878 §4.1.1): its symbol, how many bits to read for the next
/// state, and the baseline they are added to.
struct FSEEntry {
    var symbol: UInt8
    var bits: UInt8
    var baseline: UInt16
}

/// FSE tables: reading a normalized distribution, and building the decoding table from it.
enum FSETable {
    /// Reads an FSE table description from `bytes`.
    ///
    /// - Returns: the normalized counts (−1 = "less than 1"), the accuracy log, and the bytes used.
    /// - Throws: `.corrupt` for an accuracy log over `maxLog`, too many symbols, or counts that do not add up.
    static func readDistribution(_ bytes: UnsafeRawBufferPointer, maxLog: Int, maxSymbol: Int, what: String,
                                 offset: Int) throws(CompressionError) -> (counts: [Int16], log: Int, size: Int) {
        guard bytes.count > 0 else { throw .truncated(what: what, offset: offset, needed: 1, available: 0) }
        var reader = ForwardBitReader(bytes)
        let log = reader.peek(4) + 5
        reader.skip(4)
        guard log <= maxLog else {
            throw .corrupt(what: what, offset: offset, reason: "accuracy log \(log) exceeds \(maxLog)")
        }
        var counts: [Int16] = []
        counts.reserveCapacity(maxSymbol + 1)
        var remaining = (1 << log) + 1
        var threshold = 1 << log
        var bits = log + 1
        var previousZero = false
        while remaining > 1 {
            if previousZero {
                var repeats = 0
                while true {
                    let flag = reader.peek(2)
                    reader.skip(2)
                    repeats += flag
                    guard reader.bytesUsed <= bytes.count else {
                        throw .truncated(what: what, offset: offset, needed: reader.bytesUsed, available: bytes.count)
                    }
                    if flag != 3 { break }
                }
                guard counts.count + repeats <= maxSymbol + 1 else {
                    throw .corrupt(what: what, offset: offset, reason: "more than \(maxSymbol + 1) symbols")
                }
                counts.append(contentsOf: repeatElement(0, count: repeats))
            }
            guard counts.count <= maxSymbol else {
                throw .corrupt(what: what, offset: offset, reason: "more than \(maxSymbol + 1) symbols")
            }
            let maxValue = (2 * threshold - 1) - remaining
            var value: Int
            let low = reader.peek(bits - 1)
            if low < maxValue {
                value = low
                reader.skip(bits - 1)
            } else {
                value = reader.peek(bits)
                if value >= threshold { value -= maxValue }
                reader.skip(bits)
            }
            let count = value - 1
            remaining -= abs(count)
            guard remaining >= 1 else {
                throw .corrupt(what: what, offset: offset, reason: "probabilities exceed the table size \(1 << log)")
            }
            counts.append(Int16(count))
            previousZero = count == 0
            while remaining < threshold && bits > 1 {
                bits -= 1
                threshold >>= 1
            }
            guard reader.bytesUsed <= bytes.count else {
                throw .truncated(what: what, offset: offset, needed: reader.bytesUsed, available: bytes.count)
            }
        }
        return (counts, log, reader.bytesUsed)
    }

    /// Builds the decoding table for `counts` at accuracy `log` (spreading symbols as RFC 8878 §4.1.1 says).
    ///
    /// - Throws: `.corrupt` if the counts do not fill the table exactly.
    static func decodingTable(_ counts: [Int16], log: Int, what: String, offset: Int) throws(CompressionError) -> [FSEEntry] {
        let size = 1 << log
        var table = [FSEEntry](repeating: FSEEntry(symbol: 0, bits: 0, baseline: 0), count: size)
        var next = [Int](repeating: 0, count: counts.count)
        var high = size - 1
        var total = 0
        for (symbol, count) in counts.enumerated() {
            if count == -1 {
                guard high >= 0 else { throw .corrupt(what: what, offset: offset, reason: "too many low-probability symbols") }
                table[high].symbol = UInt8(symbol)
                high -= 1
                next[symbol] = 1
                total += 1
            } else {
                next[symbol] = Int(count)
                total += Int(count)
            }
        }
        guard total == size else {
            throw .corrupt(what: what, offset: offset, reason: "probabilities sum to \(total), not \(size)")
        }
        let step = (size >> 1) + (size >> 3) + 3
        let mask = size - 1
        var position = 0
        for (symbol, count) in counts.enumerated() where count > 0 {
            for _ in 0..<Int(count) {
                table[position].symbol = UInt8(symbol)
                repeat { position = (position + step) & mask } while position > high
            }
        }
        guard position == 0 else { throw .corrupt(what: what, offset: offset, reason: "symbol spread did not cover the table") }
        for index in 0..<size {
            let symbol = Int(table[index].symbol)
            let state = next[symbol]
            next[symbol] += 1
            let bits = log - (Int.bitWidth - 1 - state.leadingZeroBitCount)
            table[index].bits = UInt8(bits)
            table[index].baseline = UInt16((state << bits) - size)
        }
        return table
    }
}
