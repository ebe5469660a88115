/// Decoding of Schema.fbs tables into ``Schema`` / ``Field`` / ``DataType``.
///
/// Flatbuffer tables and strings may be shared: a million fields can all point at one 100 MB name. What the
/// decoder copies out (strings, metadata, type ids) is therefore counted against a budget proportional to
/// the flatbuffer's size, so hostile sharing cannot turn a small message into unbounded memory.
struct SchemaDecoder {
    let limits: IPCReadLimits
    private(set) var fieldCount = 0
    /// Bytes copied out of the flatbuffer so far, and the most allowed.
    private(set) var copiedBytes = 0
    let copyBudget: Int

    /// - Parameter flatbufferSize: size of the flatbuffer being decoded; copies may total twice that plus 64 KiB.
    init(limits: IPCReadLimits, flatbufferSize: Int) {
        self.limits = limits
        let (doubled, overflowed) = flatbufferSize.multipliedReportingOverflow(by: 2)
        let (budget, overflowedAgain) = doubled.addingReportingOverflow(65536)
        self.copyBudget = overflowed || overflowedAgain ? .max : budget
    }

    /// Counts `bytes` copied out of the flatbuffer against the budget.
    mutating func charge(_ bytes: Int) throws(ArrowIPCError) {
        let (total, overflow) = self.copiedBytes.addingReportingOverflow(bytes)
        guard !overflow, total <= self.copyBudget else {
            throw .limitExceeded(what: "bytes decoded from shared flatbuffer strings and vectors", limit: self.copyBudget,
                                 found: overflow ? .max : total)
        }
        self.copiedBytes = total
    }

    private mutating func string(_ table: FlatbufferTable, _ id: Int, _ name: String) throws(ArrowIPCError) -> String? {
        guard let bytes = try table.byteString(id, name) else { return nil }
        try self.charge(bytes.count)
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func schema(_ table: FlatbufferTable) throws(ArrowIPCError) -> Schema {
        let endiannessValue = try table.scalar(0, "endianness", default: Int16(0))
        guard let endianness = Endianness(rawValue: endiannessValue) else {
            throw .invalidMessage(what: "Schema.endianness", reason: "unknown value \(endiannessValue)")
        }
        var fields: [Field] = []
        for fieldTable in try table.tables(1, "fields", maxCount: self.limits.maxFieldCount - self.fieldCount) {
            fields.append(try self.field(fieldTable, depth: 1))
        }
        let metadata = try self.keyValues(table, id: 2)
        let features = try table.scalars(3, "features", as: Int64.self)
        try self.charge(features.count * 8)
        return Schema(fields, metadata: metadata, endianness: endianness, features: features)
    }

    mutating func keyValues(_ table: FlatbufferTable, id: Int) throws(ArrowIPCError) -> [KeyValue] {
        var result: [KeyValue] = []
        for entry in try table.tables(id, "custom_metadata") {
            let key = try entry.byteString(0, "key") ?? []
            let value = try entry.byteString(1, "value") ?? []
            // 16: what an entry costs even when every key and value is empty (and shared).
            try self.charge(key.count + value.count + 16)
            result.append(KeyValue(key: Array(key), value: Array(value)))
        }
        return result
    }

    mutating func field(_ table: FlatbufferTable, depth: Int) throws(ArrowIPCError) -> Field {
        self.fieldCount += 1
        guard self.fieldCount <= self.limits.maxFieldCount else {
            throw .limitExceeded(what: "number of schema fields", limit: self.limits.maxFieldCount, found: self.fieldCount)
        }
        guard depth <= self.limits.maxNestingDepth else {
            throw .limitExceeded(what: "field nesting depth", limit: self.limits.maxNestingDepth, found: depth)
        }
        let name = try self.string(table, 0, "name") ?? ""
        let nullable = try table.bool(1, "nullable", default: false)
        let typeID = try table.scalar(2, "type_type", default: UInt8(0))
        let typeTable = try table.table(3, "type")
        var children: [Field] = []
        for childTable in try table.tables(5, "children", maxCount: self.limits.maxFieldCount - self.fieldCount) {
            children.append(try self.field(childTable, depth: depth + 1))
        }
        var dictionary: DictionaryEncoding?
        if let encoding = try table.table(4, "dictionary") {
            dictionary = try Self.dictionaryEncoding(encoding, field: name)
        }
        let metadata = try self.keyValues(table, id: 6)
        let type = try self.dataType(typeID, typeTable, children: children, field: name)
        return Field(name, type, nullable: nullable, dictionary: dictionary, metadata: metadata)
    }

    static func dictionaryEncoding(_ table: FlatbufferTable, field: String) throws(ArrowIPCError) -> DictionaryEncoding {
        let id = try table.scalar(0, "id", default: Int64(0))
        var indexType = IntType.int32
        if let intTable = try table.table(1, "indexType") {
            indexType = try Self.intType(intTable, field: field)
        }
        let ordered = try table.bool(2, "isOrdered", default: false)
        let kind = try table.scalar(3, "dictionaryKind", default: Int16(0))
        guard kind == 0 else { throw .unsupported(what: "dictionary kind \(kind) in field '\(field)'") }
        return DictionaryEncoding(id: id, indexType: indexType, isOrdered: ordered)
    }

    static func intType(_ table: FlatbufferTable, field: String) throws(ArrowIPCError) -> IntType {
        let bitWidth = try table.scalar(0, "bitWidth", default: Int32(0))
        guard [8, 16, 32, 64].contains(bitWidth) else {
            throw .invalidMessage(what: "Int.bitWidth of field '\(field)'", reason: "\(bitWidth) is not 8, 16, 32 or 64")
        }
        return IntType(bitWidth: Int(bitWidth), isSigned: try table.bool(1, "is_signed", default: false))
    }

    private static func timeUnit(_ value: Int16, field: String) throws(ArrowIPCError) -> TimeUnit {
        guard let unit = TimeUnit(rawValue: value) else {
            throw .invalidMessage(what: "time unit of field '\(field)'", reason: "unknown value \(value)")
        }
        return unit
    }

    private static func expectChildren(_ children: [Field], _ count: Int, _ type: String, field: String) throws(ArrowIPCError) {
        guard children.count == count else {
            throw .invalidMessage(what: "field '\(field)'", reason: "\(type) needs \(count) child field(s), found \(children.count)")
        }
    }

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    mutating func dataType(_ id: UInt8, _ table: FlatbufferTable?, children: [Field], field: String) throws(ArrowIPCError) -> DataType {
        // A missing table means every parameter takes its default.
        func scalar<T: FixedWidthInteger>(_ slot: Int, _ name: String, _ defaultValue: T) throws(ArrowIPCError) -> T {
            guard let table else { return defaultValue }
            return try table.scalar(slot, name, default: defaultValue)
        }
        let flat: Bool
        switch id {
        case 12, 13, 14, 16, 17, 21, 22, 25, 26: flat = false
        default: flat = true
        }
        if flat, !children.isEmpty {
            throw .invalidMessage(what: "field '\(field)'", reason: "type id \(id) takes no child fields, found \(children.count)")
        }
        switch id {
        case 1: return .null
        case 2:
            let bitWidth = try scalar(0, "bitWidth", Int32(0))
            guard [8, 16, 32, 64].contains(bitWidth) else {
                throw .invalidMessage(what: "Int.bitWidth of field '\(field)'", reason: "\(bitWidth) is not 8, 16, 32 or 64")
            }
            return .int(IntType(bitWidth: Int(bitWidth), isSigned: try scalar(1, "is_signed", UInt8(0)) != 0))
        case 3:
            let value = try scalar(0, "precision", Int16(0))
            guard let precision = FloatPrecision(rawValue: value) else {
                throw .invalidMessage(what: "FloatingPoint.precision of field '\(field)'", reason: "unknown value \(value)")
            }
            return .floatingPoint(precision)
        case 4: return .binary
        case 5: return .utf8
        case 6: return .bool
        case 7:
            let bitWidth = try scalar(2, "bitWidth", Int32(128))
            guard [32, 64, 128, 256].contains(bitWidth) else {
                throw .invalidMessage(what: "Decimal.bitWidth of field '\(field)'", reason: "\(bitWidth) is not 32, 64, 128 or 256")
            }
            let precision = try scalar(0, "precision", Int32(0))
            let maxPrecision: Int32 = bitWidth == 32 ? 9 : bitWidth == 64 ? 18 : bitWidth == 128 ? 38 : 76
            guard precision >= 1, precision <= maxPrecision else {
                throw .invalidMessage(what: "Decimal.precision of field '\(field)'",
                                      reason: "\(precision) is outside 1...\(maxPrecision) for decimal\(bitWidth)")
            }
            return .decimal(precision: precision, scale: try scalar(1, "scale", Int32(0)), bitWidth: bitWidth)
        case 8:
            let value = try scalar(0, "unit", Int16(1))
            guard let unit = DateUnit(rawValue: value) else {
                throw .invalidMessage(what: "Date.unit of field '\(field)'", reason: "unknown value \(value)")
            }
            return .date(unit)
        case 9:
            let unit = try Self.timeUnit(try scalar(0, "unit", Int16(1)), field: field)
            let bitWidth = try scalar(1, "bitWidth", Int32(32))
            let expected: Int32 = (unit == .second || unit == .millisecond) ? 32 : 64
            guard bitWidth == expected else {
                throw .invalidMessage(what: "Time.bitWidth of field '\(field)'", reason: "\(bitWidth) does not match unit \(unit)")
            }
            return .time(unit, bitWidth: bitWidth)
        case 10:
            let unit = try Self.timeUnit(try scalar(0, "unit", Int16(0)), field: field)
            guard let table else { return .timestamp(unit, timezone: nil) }
            return .timestamp(unit, timezone: try self.string(table, 1, "timezone"))
        case 11:
            let value = try scalar(0, "unit", Int16(0))
            guard let unit = IntervalUnit(rawValue: value) else {
                throw .invalidMessage(what: "Interval.unit of field '\(field)'", reason: "unknown value \(value)")
            }
            return .interval(unit)
        case 12:
            try Self.expectChildren(children, 1, "list", field: field)
            return .list(children[0])
        case 13: return .structType(children)
        case 14:
            let value = try scalar(0, "mode", Int16(0))
            guard let mode = UnionMode(rawValue: value) else {
                throw .invalidMessage(what: "Union.mode of field '\(field)'", reason: "unknown value \(value)")
            }
            var typeIDs: [Int32]?
            if let table, try table.has(1) {
                let ids = try table.scalars(1, "typeIds", as: Int32.self)
                try self.charge(ids.count * 4)
                typeIDs = ids
            }
            if let typeIDs {
                guard typeIDs.count == children.count else {
                    throw .invalidMessage(what: "Union.typeIds of field '\(field)'",
                                          reason: "\(typeIDs.count) type ids for \(children.count) children")
                }
                guard typeIDs.allSatisfy({ $0 >= 0 && $0 < 128 }), Set(typeIDs).count == typeIDs.count else {
                    throw .invalidMessage(what: "Union.typeIds of field '\(field)'", reason: "type ids must be distinct and in 0...127")
                }
            } else if children.count > 128 {
                throw .invalidMessage(what: "union field '\(field)'", reason: "more than 128 children")
            }
            return .union(mode, typeIDs: typeIDs, children: children)
        case 15:
            let width = try scalar(0, "byteWidth", Int32(0))
            guard width >= 0 else {
                throw .invalidMessage(what: "FixedSizeBinary.byteWidth of field '\(field)'", reason: "negative width \(width)")
            }
            return .fixedSizeBinary(byteWidth: width)
        case 16:
            try Self.expectChildren(children, 1, "fixed_size_list", field: field)
            let size = try scalar(0, "listSize", Int32(0))
            guard size >= 0 else {
                throw .invalidMessage(what: "FixedSizeList.listSize of field '\(field)'", reason: "negative size \(size)")
            }
            return .fixedSizeList(children[0], listSize: size)
        case 17:
            try Self.expectChildren(children, 1, "map", field: field)
            guard case let .structType(entries) = children[0].type, entries.count == 2, children[0].dictionary == nil else {
                throw .invalidMessage(what: "map field '\(field)'", reason: "the child must be a struct of key and value")
            }
            return .map(children[0], keysSorted: try scalar(0, "keysSorted", UInt8(0)) != 0)
        case 18:
            return .duration(try Self.timeUnit(try scalar(0, "unit", Int16(1)), field: field))
        case 19: return .largeBinary
        case 20: return .largeUtf8
        case 21:
            try Self.expectChildren(children, 1, "large_list", field: field)
            return .largeList(children[0])
        case 22:
            try Self.expectChildren(children, 2, "run_end_encoded", field: field)
            guard case let .int(runEndType) = children[0].type, runEndType.isSigned, runEndType.bitWidth >= 16,
                  children[0].dictionary == nil
            else {
                throw .invalidMessage(what: "run_end_encoded field '\(field)'", reason: "run ends must be int16, int32 or int64")
            }
            return .runEndEncoded(runEnds: children[0], values: children[1])
        case 23: return .binaryView
        case 24: return .utf8View
        case 25:
            try Self.expectChildren(children, 1, "list_view", field: field)
            return .listView(children[0])
        case 26:
            try Self.expectChildren(children, 1, "large_list_view", field: field)
            return .largeListView(children[0])
        case 0:
            throw .invalidMessage(what: "field '\(field)'", reason: "type is missing")
        default:
            throw .unsupported(what: "type id \(id) in field '\(field)'")
        }
    }
}
