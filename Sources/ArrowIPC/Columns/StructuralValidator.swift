/// The O(buffers) checks run before any array is handed out: types agree with the schema, every buffer
/// is long enough for the array's length, first and last offsets lie inside their data, children are
/// long enough. After them, reading any slot of a fixed-width array cannot go out of bounds; what needs
/// a scan of the data is left to ``FullValidator``.
///
/// Every length here may come from the wire (up to Int64.max): sizes are combined with overflow-reporting
/// arithmetic, so an absurd length fails as "buffer too small" or "overflows", never as a trap.
enum StructuralValidator {
    /// - Parameter checkDictionaries: also check every chunk of the dictionaries the array refers to
    ///   (false when they come from a reader's memo, which checked each chunk once when it arrived: checking
    ///   them again for every batch would cost O(batches × chunks)).
    static func check(_ array: ArrayData, against field: Field, checkDictionaries: Bool = true) throws(ArrowIPCError) {
        try self.check(array, field: field, depth: 1, checkDictionaries: checkDictionaries)
    }

    private static func fail(_ field: Field, _ reason: String) -> ArrowIPCError {
        .invalidData(field: field.name, reason: reason)
    }

    private static func need(_ buffer: ArrowBuffer, _ bytes: Int, _ what: String, _ field: Field) throws(ArrowIPCError) {
        guard buffer.count >= bytes else {
            throw self.fail(field, "\(what) buffer has \(buffer.count) bytes, \(bytes) needed")
        }
    }

    private static func product(_ a: Int, _ b: Int, _ field: Field) throws(ArrowIPCError) -> Int {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw self.fail(field, "size \(a) × \(b) overflows") }
        return value
    }

    static func bitmapBytes(_ length: Int) -> Int { (length >> 3) + (length & 7 == 0 ? 0 : 1) }

    private static func expectBuffers(_ array: ArrayData, _ count: Int, _ field: Field) throws(ArrowIPCError) {
        guard array.buffers.count == count else {
            throw self.fail(field, "\(array.buffers.count) buffers for \(field.typeDescription), \(count) expected")
        }
    }

    /// Checks an offsets buffer's size and its first and last entries; returns the last offset.
    private static func checkOffsets(_ array: ArrayData, offsets: ArrowBuffer, wide: Bool, limit: Int, what: String,
                                     _ field: Field) throws(ArrowIPCError) -> Int {
        let width = wide ? 8 : 4
        if array.length == 0 && offsets.count == 0 { return 0 }
        let (entries, overflow) = array.length.addingReportingOverflow(1)
        guard !overflow else { throw self.fail(field, "length \(array.length) leaves no room for its offsets") }
        try self.need(offsets, try self.product(entries, width, field), "offsets", field)
        let first = wide ? Int(offsets.load(Int64.self, at: 0)) : Int(offsets.load(Int32.self, at: 0))
        let last = wide ? Int(offsets.load(Int64.self, at: array.length * 8)) : Int(offsets.load(Int32.self, at: array.length * 4))
        guard first >= 0, first <= last, last <= limit else {
            throw self.fail(field, "offsets \(first)...\(last) do not fit \(what) of length \(limit)")
        }
        return last
    }

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    private static func check(_ array: ArrayData, field: Field, depth: Int, checkDictionaries: Bool) throws(ArrowIPCError) {
        guard array.type == field.type else {
            throw self.fail(field, "array of type \(array.type) where the schema says \(field.type)")
        }
        guard array.length >= 0, array.nullCount >= 0, array.nullCount <= array.length else {
            throw self.fail(field, "length \(array.length) and null count \(array.nullCount) are inconsistent")
        }
        let length = array.length
        if let encoding = field.dictionary {
            guard array.encoding == encoding else {
                throw self.fail(field, "dictionary encoding \(String(describing: array.encoding)) differs from the schema's")
            }
            try self.expectBuffers(array, 2, field)
            if array.nullCount > 0 { try self.need(array.buffers[0], self.bitmapBytes(length), "validity", field) }
            try self.need(array.buffers[1], try self.product(length, encoding.indexType.bitWidth / 8, field), "indices", field)
            guard let dictionary = array.dictionary else { throw self.fail(field, "dictionary \(encoding.id) is missing") }
            var valueField = field
            valueField.dictionary = nil
            guard dictionary.chunkCount > 0, dictionary.valueType == valueField.type else {
                throw self.fail(field, "dictionary \(encoding.id) holds \(dictionary.chunkCount > 0 ? "\(dictionary.valueType)" : "no") values, the schema says \(valueField.type)")
            }
            if checkDictionaries {
                // Chunks are immutable and all checked against the type of chunk 0 (just compared): the ones a
                // previous batch checked need no second look.
                for index in min(dictionary.lineage.checkedCount, dictionary.chunkCount)..<dictionary.chunkCount {
                    try self.check(dictionary.chunk(index), field: valueField, depth: depth, checkDictionaries: true)
                }
                dictionary.lineage.markChecked(dictionary.chunkCount)
            }
            return
        }
        guard array.encoding == nil, array.dictionary == nil else {
            throw self.fail(field, "dictionary-encoded array for a field without dictionary encoding")
        }
        let childFields = field.type.children
        guard array.children.count == childFields.count else {
            throw self.fail(field, "\(array.children.count) child arrays, \(childFields.count) expected")
        }
        if !childFields.isEmpty {
            guard depth < 1024 else { throw .limitExceeded(what: "array nesting depth", limit: 1024, found: depth) }
            for (child, childField) in zip(array.children, childFields) {
                try self.check(child, field: childField, depth: depth + 1, checkDictionaries: checkDictionaries)
            }
        }
        func validity() throws(ArrowIPCError) {
            if array.nullCount > 0 { try self.need(array.buffers[0], self.bitmapBytes(length), "validity", field) }
        }
        switch field.type {
        case .null:
            try self.expectBuffers(array, 0, field)
        case .bool:
            try self.expectBuffers(array, 2, field)
            try validity()
            try self.need(array.buffers[1], self.bitmapBytes(length), "values", field)
        case .int, .floatingPoint, .decimal, .date, .time, .timestamp, .duration, .interval, .fixedSizeBinary:
            try self.expectBuffers(array, 2, field)
            try validity()
            try self.need(array.buffers[1], try self.product(length, field.type.byteWidth ?? 0, field), "values", field)
        case .binary, .utf8, .largeBinary, .largeUtf8:
            try self.expectBuffers(array, 3, field)
            try validity()
            let wide = field.type == .largeBinary || field.type == .largeUtf8
            _ = try self.checkOffsets(array, offsets: array.buffers[1], wide: wide, limit: array.buffers[2].count,
                                      what: "the data buffer", field)
        case .binaryView, .utf8View:
            guard array.buffers.count >= 2 else { try self.expectBuffers(array, 2, field); return }
            try validity()
            try self.need(array.buffers[1], try self.product(length, 16, field), "views", field)
        case .list, .largeList, .map:
            try self.expectBuffers(array, 2, field)
            try validity()
            let wide: Bool
            if case .largeList = field.type { wide = true } else { wide = false }
            _ = try self.checkOffsets(array, offsets: array.buffers[1], wide: wide, limit: array.children[0].length,
                                      what: "the child array", field)
            if case .map = field.type, array.children[0].nullCount > 0 {
                throw self.fail(field, "map entries must not be null")
            }
        case .listView, .largeListView:
            try self.expectBuffers(array, 3, field)
            try validity()
            let width: Int
            if case .largeListView = field.type { width = 8 } else { width = 4 }
            try self.need(array.buffers[1], try self.product(length, width, field), "offsets", field)
            try self.need(array.buffers[2], try self.product(length, width, field), "sizes", field)
        case let .fixedSizeList(_, size):
            try self.expectBuffers(array, 1, field)
            try validity()
            let needed = try self.product(length, Int(size), field)
            guard array.children[0].length >= needed else {
                throw self.fail(field, "child has \(array.children[0].length) values, \(needed) needed")
            }
        case .structType:
            try self.expectBuffers(array, 1, field)
            try validity()
            for (child, childField) in zip(array.children, childFields) where child.length < length {
                throw self.fail(childField, "struct child has length \(child.length), parent \(length)")
            }
        case let .union(mode, _, _):
            try self.expectBuffers(array, mode == .sparse ? 1 : 2, field)
            guard array.nullCount == 0 else { throw self.fail(field, "unions have no validity, null count must be 0") }
            try self.need(array.buffers[0], length, "type ids", field)
            if mode == .dense {
                try self.need(array.buffers[1], try self.product(length, 4, field), "offsets", field)
            } else {
                for (child, childField) in zip(array.children, childFields) where child.length < length {
                    throw self.fail(childField, "sparse union child has length \(child.length), union \(length)")
                }
            }
        case .runEndEncoded:
            try self.expectBuffers(array, 0, field)
            guard array.nullCount == 0 else { throw self.fail(field, "run-end encoded arrays have null count 0") }
            guard array.children[0].nullCount == 0 else { throw self.fail(field, "run ends must not be null") }
            guard array.children[0].length <= array.children[1].length else {
                throw self.fail(field, "\(array.children[0].length) run ends but \(array.children[1].length) values")
            }
            if length > 0 && array.children[0].length == 0 { throw self.fail(field, "no runs for \(length) values") }
        }
    }
}
