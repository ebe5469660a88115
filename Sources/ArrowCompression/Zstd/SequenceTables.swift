/// One state of a sequence decoding table: the FSE transition plus the code's base value and extra bits
/// (RFC 8878 §3.1.1.3.2.1), so decoding a sequence needs no second lookup.
struct SequenceEntry {
    var baseValue: UInt32
    var nextBaseline: UInt16
    var extraBits: UInt8
    var stateBits: UInt8
}

/// The three kinds of sequence codes and their tables.
enum SequenceCode {
    case literalLength, offset, matchLength

    var name: String {
        switch self {
        case .literalLength: return "literal lengths"
        case .offset: return "offsets"
        case .matchLength: return "match lengths"
        }
    }

    var maxLog: Int { self == .offset ? 8 : 9 }
    var maxSymbol: Int {
        switch self {
        case .literalLength: return 35
        case .offset: return 31
        case .matchLength: return 52
        }
    }

    static let literalLengthBase: [UInt32] = Array(0...15) + [16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512,
                                                             1024, 2048, 4096, 8192, 16384, 32768, 65536]
    static let literalLengthBits: [UInt8] = [UInt8](repeating: 0, count: 16) + [1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9,
                                                                                  10, 11, 12, 13, 14, 15, 16]
    static let matchLengthBase: [UInt32] = Array(3...34) + [35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515,
                                                           1027, 2051, 4099, 8195, 16387, 32771, 65539]
    static let matchLengthBits: [UInt8] = [UInt8](repeating: 0, count: 32) + [1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9,
                                                                                  10, 11, 12, 13, 14, 15, 16]

    static let predefinedLiteralLengths: [Int16] = [4, 3] + [Int16](repeating: 2, count: 11) + [1, 1, 1]
        + [Int16](repeating: 2, count: 9) + [3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1]
    static let predefinedMatchLengths: [Int16] = [1, 4, 3] + [Int16](repeating: 2, count: 6)
        + [Int16](repeating: 1, count: 37) + [Int16](repeating: -1, count: 7)
    static let predefinedOffsets: [Int16] = [Int16](repeating: 1, count: 6) + [2, 2, 2]
        + [Int16](repeating: 1, count: 15) + [Int16](repeating: -1, count: 5)

    var predefined: (counts: [Int16], log: Int) {
        switch self {
        case .literalLength: return (Self.predefinedLiteralLengths, 6)
        case .offset: return (Self.predefinedOffsets, 5)
        case .matchLength: return (Self.predefinedMatchLengths, 6)
        }
    }

    /// The base value and extra bits of `code`.
    func value(of code: Int) -> (UInt32, UInt8) {
        switch self {
        case .literalLength: return (Self.literalLengthBase[code], Self.literalLengthBits[code])
        case .matchLength: return (Self.matchLengthBase[code], Self.matchLengthBits[code])
        case .offset: return (UInt32(1) << UInt32(code), UInt8(code))
        }
    }

    /// The sequence table for a distribution.
    func table(_ counts: [Int16], log: Int, offset: Int) throws(CompressionError) -> SequenceTable {
        let fse = try FSETable.decodingTable(counts, log: log, what: "FSE table of \(self.name)", offset: offset)
        return SequenceTable(log: log, entries: fse.map { entry in
            let (base, extra) = self.value(of: Int(entry.symbol))
            return SequenceEntry(baseValue: base, nextBaseline: entry.baseline, extraBits: extra, stateBits: entry.bits)
        })
    }

    private static let predefinedTables: [SequenceTable?] = [SequenceCode.literalLength, .offset, .matchLength].map { code in
        let (counts, log) = code.predefined
        return try? code.table(counts, log: log, offset: 0)
    }

    /// The predefined table (built once).
    func predefinedTable() throws(CompressionError) -> SequenceTable {
        let index = self == .literalLength ? 0 : self == .offset ? 1 : 2
        if let table = Self.predefinedTables[index] { return table }
        let (counts, log) = self.predefined
        return try self.table(counts, log: log, offset: 0)
    }

    /// The table of one repeated code (RLE mode).
    func rle(_ code: Int, offset: Int) throws(CompressionError) -> SequenceTable {
        guard code <= self.maxSymbol else {
            throw .corrupt(what: "RLE code of \(self.name)", offset: offset, reason: "code \(code) exceeds \(self.maxSymbol)")
        }
        let (base, extra) = self.value(of: code)
        return SequenceTable(log: 0, entries: [SequenceEntry(baseValue: base, nextBaseline: 0, extraBits: extra, stateBits: 0)])
    }
}

struct SequenceTable {
    var log: Int
    var entries: [SequenceEntry]
}
