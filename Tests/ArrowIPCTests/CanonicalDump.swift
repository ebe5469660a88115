@testable import ArrowIPC

/// The canonical JSON dump of Tests/Fixtures/ArrowIPC/canonical_dump.py, produced from our reader's
/// arrays, so that values can be compared with pyarrow's byte for byte.
enum CanonicalDump {
    static func dump(_ batches: [RecordBatch]) -> String {
        let rendered = batches.map { batch in
            let columns = batch.columns.map { "[" + self.render($0).joined(separator: ",") + "]" }
            return "{\"rows\":\(batch.length),\"columns\":[\(columns.joined(separator: ","))]}"
        }
        return "{\"batches\":[\(rendered.joined(separator: ","))]}"
    }

    private static func hex(_ bytes: some Collection<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        out.append(UInt8(ascii: "\""))
        return String(decoding: out, as: UTF8.self)
    }

    /// Base-10 text of a little-endian two's-complement integer of `bytes.count` bytes.
    static func decimalString(_ bytes: [UInt8]) -> String {
        var limbs: [UInt32] = stride(from: 0, to: bytes.count, by: 4).map { start in
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[start + $1]) << (8 * UInt32($1)) }
        }
        let negative = (bytes.last ?? 0) & 0x80 != 0
        if negative {
            var carry: UInt64 = 1
            for index in limbs.indices {
                let value = UInt64(~limbs[index]) + carry
                limbs[index] = UInt32(truncatingIfNeeded: value)
                carry = value >> 32
            }
        }
        var digits: [UInt8] = []
        while limbs.contains(where: { $0 != 0 }) {
            var remainder: UInt64 = 0
            for index in limbs.indices.reversed() {
                let value = (remainder << 32) | UInt64(limbs[index])
                limbs[index] = UInt32(value / 10)
                remainder = value % 10
            }
            digits.append(UInt8(ascii: "0") + UInt8(remainder))
        }
        if digits.isEmpty { digits = [UInt8(ascii: "0")] }
        return "\"" + (negative ? "-" : "") + String(decoding: digits.reversed(), as: UTF8.self) + "\""
    }

    private static func integer(_ buffer: ArrowBuffer, _ index: Int, width: Int, signed: Bool) -> String {
        switch (width, signed) {
        case (1, true): return String(Int8(bitPattern: buffer[index]))
        case (1, false): return String(buffer[index])
        case (2, true): return String(buffer.load(Int16.self, at: index * 2))
        case (2, false): return String(buffer.load(UInt16.self, at: index * 2))
        case (4, true): return String(buffer.load(Int32.self, at: index * 4))
        case (4, false): return String(buffer.load(UInt32.self, at: index * 4))
        case (8, true): return String(buffer.load(Int64.self, at: index * 8))
        default: return String(buffer.load(UInt64.self, at: index * 8))
        }
    }

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    static func render(_ array: ArrayData) -> [String] {
        let length = array.length
        func rows(_ body: (Int) -> String) -> [String] {
            (0..<length).map { array.isValid($0) ? body($0) : "null" }
        }
        if let encoding = array.encoding {
            let values = array.dictionary?.chunks.flatMap { self.render($0) } ?? []
            return rows { values[IndexLoader.load(array.buffers[1], type: encoding.indexType, index: $0)] }
        }
        let values = array.buffers.count > 1 ? array.buffers[1] : .empty
        switch array.type {
        case .null:
            return Array(repeating: "null", count: length)
        case .bool:
            return rows { values.bit($0) ? "true" : "false" }
        case let .int(type):
            return rows { self.integer(values, $0, width: type.bitWidth / 8, signed: type.isSigned) }
        case let .floatingPoint(precision):
            let width = precision == .half ? 2 : precision == .single ? 4 : 8
            return rows { self.integer(values, $0, width: width, signed: false) }
        case let .decimal(_, _, bitWidth):
            let width = Int(bitWidth) / 8
            return rows { index in self.decimalString(Array(values.slice(offset: index * width, count: width).bytes)) }
        case .date, .time, .timestamp, .duration, .interval(.yearMonth):
            let width = array.type.byteWidth ?? 8
            return rows { self.integer(values, $0, width: width, signed: true) }
        case .interval(.dayTime):
            return rows { "[\(values.load(Int32.self, at: $0 * 8)),\(values.load(Int32.self, at: $0 * 8 + 4))]" }
        case .interval(.monthDayNano):
            return rows {
                "[\(values.load(Int32.self, at: $0 * 16)),\(values.load(Int32.self, at: $0 * 16 + 4)),\(values.load(Int64.self, at: $0 * 16 + 8))]"
            }
        case let .fixedSizeBinary(width):
            return rows { self.hex(values.slice(offset: $0 * Int(width), count: Int(width)).bytes) }
        case .binary, .utf8, .largeBinary, .largeUtf8, .binaryView, .utf8View:
            guard let column = try? array.binaries() else { return ["<invalid>"] }
            return rows { self.hex(column[$0] ?? []) }
        case .list, .map:
            let child = self.render(array.children[0])
            return rows { "[" + child[Int(values.load(Int32.self, at: $0 * 4))..<Int(values.load(Int32.self, at: $0 * 4 + 4))].joined(separator: ",") + "]" }
        case .largeList:
            let child = self.render(array.children[0])
            return rows { "[" + child[Int(values.load(Int64.self, at: $0 * 8))..<Int(values.load(Int64.self, at: $0 * 8 + 8))].joined(separator: ",") + "]" }
        case .listView, .largeListView:
            let child = self.render(array.children[0])
            let wide: Bool
            if case .largeListView = array.type { wide = true } else { wide = false }
            return rows { index in
                let offset = wide ? Int(values.load(Int64.self, at: index * 8)) : Int(values.load(Int32.self, at: index * 4))
                let size = wide ? Int(array.buffers[2].load(Int64.self, at: index * 8)) : Int(array.buffers[2].load(Int32.self, at: index * 4))
                return "[" + child[offset..<(offset + size)].joined(separator: ",") + "]"
            }
        case let .fixedSizeList(_, size):
            let child = self.render(array.children[0])
            let width = Int(size)
            return rows { "[" + child[($0 * width)..<(($0 + 1) * width)].joined(separator: ",") + "]" }
        case .structType:
            let children = array.children.map { self.render($0) }
            return rows { index in "[" + children.map { $0[index] }.joined(separator: ",") + "]" }
        case let .union(mode, typeIDs, fields):
            let children = array.children.map { self.render($0) }
            var childForCode = [Int](repeating: 0, count: 128)
            for child in 0..<fields.count { childForCode[Int(typeIDs?[child] ?? Int32(child))] = child }
            return (0..<length).map { index in
                let code = Int(Int8(bitPattern: array.buffers[0][index]))
                let slot = mode == .dense ? Int(values.load(Int32.self, at: index * 4)) : index
                return "[\(code),\(children[childForCode[code]][slot])]"
            }
        case .runEndEncoded:
            let runEnds = array.children[0]
            guard case let .int(endType) = runEnds.type else { return [] }
            let rendered = self.render(array.children[1])
            var run = 0
            return (0..<length).map { index in
                while RunEnds.load(runEnds.buffers[1], width: endType.bitWidth, index: run) <= index { run += 1 }
                return rendered[run]
            }
        }
    }
}
