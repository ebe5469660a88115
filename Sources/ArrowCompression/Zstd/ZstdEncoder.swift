/// Zstandard compression: a greedy hash match finder with repeat offsets, Huffman-coded literals, and
/// sequences coded with the predefined FSE tables. Blocks that do not shrink are stored raw.
extension Zstd {
    /// Compresses `input` into Zstandard frames (one per GiB) without a content checksum unless asked.
    ///
    /// `level` ≤ 1 is the fastest (it skips ahead faster over incompressible data); higher levels search
    /// every position. Output always decodes with any RFC 8878 decoder.
    public static func compress(_ input: some ContiguousCollection, level: Int = 1, checksum: Bool = false) -> [UInt8] {
        input.withUnsafeBytes { bytes in
            var encoder = ZstdEncoder(level: level)
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count / 2 + 64)
            var start = 0
            repeat {
                let count = min(1 << 30, bytes.count - start)
                encoder.frame(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)]), checksum: checksum, into: &out)
                start += count
            } while start < bytes.count
            return out
        }
    }
}

struct ZstdEncoder {
    static let hashLog = 16
    static let minMatch = 5
    static let windowLog = 23

    let level: Int
    private let table: MatchTable
    private let literalLengths = FSEEncoder(SequenceCode.predefinedLiteralLengths, log: 6)
    private let matchLengths = FSEEncoder(SequenceCode.predefinedMatchLengths, log: 6)
    private let offsets = FSEEncoder(SequenceCode.predefinedOffsets, log: 5)
    private var literals: [UInt8] = []
    private var sequences: [(literals: Int, match: Int, offsetValue: Int)] = []

    init(level: Int) {
        self.level = level
        self.table = MatchTable(count: 1 << Self.hashLog)
    }

    mutating func frame(_ input: UnsafeRawBufferPointer, checksum: Bool, into out: inout [UInt8]) {
        let count = input.count
        let single = count <= 1 << Self.windowLog
        var descriptor: UInt8 = checksum ? 0x04 : 0
        var sizeBytes: [UInt8] = []
        if single {
            descriptor |= 0x20
            if count < 256 {
                sizeBytes = [UInt8(count)]
            } else if count < 65_536 + 256 {
                descriptor |= 0x40
                sizeBytes = [UInt8((count - 256) & 0xFF), UInt8((count - 256) >> 8)]
            } else {
                descriptor |= 0x80
                withUnsafeBytes(of: UInt32(count).littleEndian) { sizeBytes = Array($0) }
            }
        } else {
            descriptor |= 0x80
            withUnsafeBytes(of: UInt32(count).littleEndian) { sizeBytes = Array($0) }
        }
        withUnsafeBytes(of: Zstd.magic.littleEndian) { out.append(contentsOf: $0) }
        out.append(descriptor)
        if !single { out.append(UInt8((Self.windowLog - 10) << 3)) }
        out.append(contentsOf: sizeBytes)
        self.table.reset()
        var repeats = (1, 4, 8)
        var start = 0
        repeat {
            let size = min(Zstd.maxBlockSize, count - start)
            let last = start + size == count
            self.block(input, start: start, end: start + size, last: last, repeats: &repeats, into: &out)
            start += size
        } while start < count
        if checksum {
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: XXHash.hash64(input)).littleEndian) { out.append(contentsOf: $0) }
        }
    }

    private mutating func block(_ input: UnsafeRawBufferPointer, start: Int, end: Int, last: Bool,
                                repeats: inout (Int, Int, Int), into out: inout [UInt8]) {
        let size = end - start
        let headerAt = out.count
        out.append(contentsOf: [0, 0, 0])
        var saved = repeats
        if size > 16 {
            self.findSequences(input, start: start, end: end, repeats: &saved)
            let before = out.count
            self.writeLiterals(into: &out)
            self.writeSequences(into: &out)
            let compressed = out.count - before
            if compressed < size {
                repeats = saved
                let header = (last ? 1 : 0) | 2 << 1 | compressed << 3
                out[headerAt] = UInt8(header & 0xFF)
                out[headerAt + 1] = UInt8((header >> 8) & 0xFF)
                out[headerAt + 2] = UInt8(header >> 16)
                return
            }
            out.removeLast(compressed)
            // Matches found in this block are gone with it: forget them so later blocks do not repeat them.
        }
        let header = (last ? 1 : 0) | size << 3
        out[headerAt] = UInt8(header & 0xFF)
        out[headerAt + 1] = UInt8((header >> 8) & 0xFF)
        out[headerAt + 2] = UInt8(header >> 16)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[start..<end]))
    }

    /// Greedy matching over `input[start..<end]`; matches may reach back into earlier blocks of the frame.
    private mutating func findSequences(_ input: UnsafeRawBufferPointer, start: Int, end: Int, repeats: inout (Int, Int, Int)) {
        self.literals.removeAll(keepingCapacity: true)
        self.sequences.removeAll(keepingCapacity: true)
        guard let base = input.baseAddress else { return }
        let src = base.assumingMemoryBound(to: UInt8.self)
        let limit = end - 8
        let window = 1 << Self.windowLog
        let hashShift = UInt64(64 - Self.hashLog)
        let fast = self.level <= 1
        @inline(__always) func read64(_ at: Int) -> UInt64 { base.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
        @inline(__always) func read32(_ at: Int) -> UInt32 { base.loadUnaligned(fromByteOffset: at, as: UInt32.self) }
        @inline(__always) func hash(_ at: Int) -> Int {
            Int(truncatingIfNeeded: ((read64(at) &<< 24) &* 0x9E37_79B1_85EB_CA87) &>> hashShift)
        }
        @inline(__always) func extend(_ from: Int, _ reference: Int) -> Int {
            var end2 = from
            var ref = reference
            while end2 + 8 <= end {
                let diff = read64(end2) ^ read64(ref)
                if diff != 0 { return end2 + diff.trailingZeroBitCount >> 3 }
                end2 += 8
                ref += 8
            }
            while end2 < end, src[end2] == src[ref] {
                end2 += 1
                ref += 1
            }
            return end2
        }
        var anchor = start
        var ip = start
        var rep0 = repeats.0
        var rep1 = repeats.1
        var rep2 = repeats.2
        let table = self.table.entries
        do {
            while ip < limit {
                // A repeat of the last offset one byte ahead (cheap and frequent in columnar data).
                let next = ip + 1
                if rep0 <= next, read32(next) == read32(next - rep0) {
                    let matchEnd = extend(next + 4, next + 4 - rep0)
                    table[hash(ip)] = Int32(truncatingIfNeeded: ip)
                    self.emit(src, anchor: anchor, at: next, end: matchEnd, offset: rep0, rep: &rep0, &rep1, &rep2)
                    ip = matchEnd
                    anchor = ip
                    continue
                }
                let h = hash(ip)
                let candidate = Int(table[h])
                table[h] = Int32(truncatingIfNeeded: ip)
                guard candidate >= 0, ip - candidate <= window, read32(candidate) == read32(ip),
                      src[candidate + 4] == src[ip + 4] else {
                    ip += fast ? 1 + ((ip - anchor) >> 8) : 1
                    continue
                }
                var matchStart = ip
                var reference = candidate
                while matchStart > anchor, reference > 0, src[matchStart - 1] == src[reference - 1] {
                    matchStart -= 1
                    reference -= 1
                }
                let matchEnd = extend(ip + 5, candidate + 5)
                self.emit(src, anchor: anchor, at: matchStart, end: matchEnd, offset: matchStart - reference,
                          rep: &rep0, &rep1, &rep2)
                if matchEnd - 2 < limit, matchEnd - 2 > ip {
                    table[hash(matchEnd - 2)] = Int32(truncatingIfNeeded: matchEnd - 2)
                }
                ip = matchEnd
                anchor = ip
            }
        }
        self.literals.append(contentsOf: UnsafeBufferPointer(start: src + anchor, count: end - anchor))
        repeats = (rep0, rep1, rep2)
    }

    @inline(__always)
    private mutating func emit(_ src: UnsafePointer<UInt8>, anchor: Int, at start: Int, end: Int, offset: Int,
                               rep rep0: inout Int, _ rep1: inout Int, _ rep2: inout Int) {
        let literalCount = start - anchor
        self.literals.append(contentsOf: UnsafeBufferPointer(start: src + anchor, count: literalCount))
        let value: Int
        if literalCount > 0 && offset == rep0 {
            value = 1
        } else {
            value = offset + 3
            rep2 = rep1
            rep1 = rep0
            rep0 = offset
        }
        self.sequences.append((literalCount, end - start, value))
    }

    // MARK: Sections

    private func writeLiterals(into out: inout [UInt8]) {
        let count = self.literals.count
        self.literals.withUnsafeBufferPointer { literals in
            if count >= 64, let huffman = HuffmanEncoder(literals: literals) {
                let estimate = huffman.estimate(literals) + huffman.description.count + (count > 1023 ? 6 + 5 : 3)
                if estimate < count - count / 32 {
                    var streams: [[UInt8]] = []
                    if count <= 1023 {
                        streams = [huffman.encodeStream(literals)]
                    } else {
                        let quarter = (count + 3) / 4
                        for index in 0..<4 {
                            let from = index * quarter
                            let to = min(count, from + quarter)
                            streams.append(huffman.encodeStream(UnsafeBufferPointer(rebasing: literals[from..<to])))
                        }
                    }
                    var compressed = huffman.description.count + streams.reduce(0) { $0 + $1.count }
                    if streams.count == 4 { compressed += 6 }
                    let single = streams.count == 1 && compressed <= 1023
                    if compressed < count, single || streams.count == 4, streams.allSatisfy({ $0.count <= 65_535 }) {
                        let format: Int
                        let header: Int
                        if single {
                            format = 0
                        } else if count <= 1023 && compressed <= 1023 {
                            format = 1
                        } else if count <= 16_383 && compressed <= 16_383 {
                            format = 2
                        } else {
                            format = 3
                        }
                        switch format {
                        case 0, 1: header = 2 | format << 2 | count << 4 | compressed << 14
                        case 2: header = 2 | format << 2 | count << 4 | compressed << 18
                        default: header = 2 | format << 2 | count << 4 | compressed << 22
                        }
                        let headerSize = format < 2 ? 3 : format == 2 ? 4 : 5
                        for index in 0..<headerSize { out.append(UInt8(truncatingIfNeeded: header >> (8 * index))) }
                        out.append(contentsOf: huffman.description)
                        if streams.count == 4 {
                            for index in 0..<3 {
                                out.append(UInt8(streams[index].count & 0xFF))
                                out.append(UInt8(streams[index].count >> 8))
                            }
                        }
                        for stream in streams { out.append(contentsOf: stream) }
                        return
                    }
                }
            }
            // Raw literals.
            if count <= 31 {
                out.append(UInt8(count << 3))
            } else if count <= 4095 {
                out.append(UInt8((count & 15) << 4 | 0b0100))
                out.append(UInt8(count >> 4))
            } else {
                out.append(UInt8((count & 15) << 4 | 0b1100))
                out.append(UInt8((count >> 4) & 0xFF))
                out.append(UInt8(count >> 12))
            }
            out.append(contentsOf: literals)
        }
    }

    /// Literal-length codes of 0..<64 and match-length codes of lengths 0..<131 (the table part of the codes).
    static let literalLengthCodes: [UInt8] = (0..<64).map { value in
        var code = min(value, 24)
        while Int(SequenceCode.literalLengthBase[code]) > value { code -= 1 }
        return UInt8(code)
    }
    static let matchLengthCodes: [UInt8] = (0..<131).map { length in
        guard length >= 3 else { return 0 }
        var code = min(length - 3, 42)
        while Int(SequenceCode.matchLengthBase[code]) > length { code -= 1 }
        return UInt8(code)
    }

    @inline(__always)
    private static func literalLengthCode(_ value: Int, _ table: UnsafeBufferPointer<UInt8>) -> Int {
        if value < 64 { return Int(table[value]) }
        return min(35, 25 + (Int.bitWidth - 1 - value.leadingZeroBitCount) - 6)
    }

    @inline(__always)
    private static func matchLengthCode(_ length: Int, _ table: UnsafeBufferPointer<UInt8>) -> Int {
        if length < 131 { return Int(table[length]) }
        return min(52, 43 + (Int.bitWidth - 1 - (length - 3).leadingZeroBitCount) - 7)
    }

    private func writeSequences(into out: inout [UInt8]) {
        let count = self.sequences.count
        if count < 128 {
            out.append(UInt8(count))
        } else if count < 0x7F00 {
            out.append(UInt8(count >> 8 + 128))
            out.append(UInt8(count & 0xFF))
        } else {
            out.append(255)
            out.append(UInt8((count - 0x7F00) & 0xFF))
            out.append(UInt8((count - 0x7F00) >> 8))
        }
        guard count > 0 else { return }
        var llCodes = [UInt8](repeating: 0, count: count)
        var mlCodes = [UInt8](repeating: 0, count: count)
        var ofCodes = [UInt8](repeating: 0, count: count)
        var llCounts = [Int](repeating: 0, count: 36)
        var mlCounts = [Int](repeating: 0, count: 53)
        var ofCounts = [Int](repeating: 0, count: 32)
        let llTable = Self.literalLengthCodes, mlTable = Self.matchLengthCodes
        let llBase = SequenceCode.literalLengthBase, llBits = SequenceCode.literalLengthBits
        let mlBase = SequenceCode.matchLengthBase, mlBits = SequenceCode.matchLengthBits
        for (index, sequence) in self.sequences.enumerated() {
            let ll = llTable.withUnsafeBufferPointer { Self.literalLengthCode(sequence.literals, $0) }
            let ml = mlTable.withUnsafeBufferPointer { Self.matchLengthCode(sequence.match, $0) }
            let of = Int.bitWidth - 1 - sequence.offsetValue.leadingZeroBitCount
            llCodes[index] = UInt8(ll)
            mlCodes[index] = UInt8(ml)
            ofCodes[index] = UInt8(of)
            llCounts[ll] += 1
            mlCounts[ml] += 1
            ofCounts[of] += 1
        }
        let llChoice = SequenceTableChoice(llCounts, total: count, code: .literalLength, predefined: self.literalLengths)
        let ofChoice = SequenceTableChoice(ofCounts, total: count, code: .offset, predefined: self.offsets)
        let mlChoice = SequenceTableChoice(mlCounts, total: count, code: .matchLength, predefined: self.matchLengths)
        out.append(UInt8(llChoice.mode << 6 | ofChoice.mode << 4 | mlChoice.mode << 2))
        out.append(contentsOf: llChoice.description)
        out.append(contentsOf: ofChoice.description)
        out.append(contentsOf: mlChoice.description)
        // At most 9 + 9 + 8 state bits and 16 + 16 + 31 extra bits per sequence.
        var writer = BitWriter(capacity: count * 12 + 16)
        let sequences = self.sequences
        func extras(_ index: Int, into writer: inout BitWriter) {
            let s = sequences[index]
            let ll = Int(llCodes[index]), ml = Int(mlCodes[index]), of = Int(ofCodes[index])
            writer.add(s.literals - Int(llBase[ll]), Int(llBits[ll]))
            writer.add(s.match - Int(mlBase[ml]), Int(mlBits[ml]))
            writer.add(s.offsetValue - (1 << of), of)
        }
        let last = count - 1
        var mlState = mlChoice.encoder?.initial(Int(mlCodes[last])) ?? 0
        var ofState = ofChoice.encoder?.initial(Int(ofCodes[last])) ?? 0
        var llState = llChoice.encoder?.initial(Int(llCodes[last])) ?? 0
        extras(last, into: &writer)
        var index = last
        while index > 0 {
            index -= 1
            ofChoice.encoder?.encode(Int(ofCodes[index]), state: &ofState, into: &writer)
            mlChoice.encoder?.encode(Int(mlCodes[index]), state: &mlState, into: &writer)
            llChoice.encoder?.encode(Int(llCodes[index]), state: &llState, into: &writer)
            extras(index, into: &writer)
        }
        mlChoice.encoder?.finish(mlState, into: &writer)
        ofChoice.encoder?.finish(ofState, into: &writer)
        llChoice.encoder?.finish(llState, into: &writer)
        out.append(contentsOf: writer.close())
    }
}

/// How one kind of sequence code is coded in a block: the predefined table, one repeated code (RLE), or a
/// table of its own (FSE_Compressed), whichever the estimated bit cost favours.
struct SequenceTableChoice {
    /// Symbol_Compression_Modes value: 0 predefined, 1 RLE, 2 FSE_Compressed.
    let mode: Int
    /// The bytes after the modes byte: nothing, the RLE code, or the table description.
    let description: [UInt8]
    /// nil for RLE (no bits per symbol).
    let encoder: FSEEncoder?

    init(_ counts: [Int], total: Int, code: SequenceCode, predefined: FSEEncoder) {
        let used = counts.indices.filter { counts[$0] > 0 }
        if used.count == 1 {
            self.mode = 1
            self.description = [UInt8(used[0])]
            self.encoder = nil
            return
        }
        let (predefinedCounts, predefinedLog) = code.predefined
        var predefinedCost = 0.0
        for symbol in used {
            guard symbol < predefinedCounts.count else {
                predefinedCost = .infinity
                break
            }
            let p = Double(max(1, Int(predefinedCounts[symbol])))
            predefinedCost += Double(counts[symbol]) * (Double(predefinedLog) - p.log2)
        }
        let maxSymbol = used.last ?? 0
        var log = max(5, min(code.maxLog, (Int.bitWidth - 1 - total.leadingZeroBitCount) - 1))
        while 1 << log < used.count { log += 1 }
        if total >= 16, log <= code.maxLog,
           let normalized = FSENormalizer.normalize(Array(counts[0...maxSymbol]), total: total, log: log) {
            let header = FSENormalizer.writeDistribution(normalized, log: log)
            var cost = Double(header.count * 8)
            for symbol in used {
                cost += Double(counts[symbol]) * (Double(log) - Double(normalized[symbol]).log2)
            }
            if cost < predefinedCost {
                self.mode = 2
                self.description = header
                self.encoder = FSEEncoder(normalized, log: log)
                return
            }
        }
        self.mode = 0
        self.description = []
        self.encoder = predefined
    }
}

extension Double {
    fileprivate var log2: Double {
        // log2 without Foundation: exponent plus a short series on the mantissa (accurate to ~1e-4, enough
        // for choosing a table).
        guard self > 0 else { return -.infinity }
        let exponent = Double(self.exponent)
        let m = self.significand   // in [1, 2)
        let y = (m - 1) / (m + 1)
        let y2 = y * y
        let ln = 2 * y * (1 + y2 / 3 + y2 * y2 / 5 + y2 * y2 * y2 / 7)
        return exponent + ln / 0.693_147_180_559_945_3
    }
}
/// The match finder's hash table: the last position seen per hash (−1 = none).
final class MatchTable {
    let entries: UnsafeMutablePointer<Int32>
    let count: Int

    init(count: Int) {
        self.count = count
        self.entries = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        self.reset()
    }

    func reset() { self.entries.update(repeating: -1, count: self.count) }

    deinit { self.entries.deallocate() }
}
