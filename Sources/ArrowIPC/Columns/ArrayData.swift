/// One Arrow array: its type, length, null count, buffers and children. Buffers are zero-copy views
/// into the bytes the array was read from (or the arrays it was built from).
///
/// Buffers follow the IPC layout of the type (../shared/PROTOCOLS.md §1.4), with the V5 conventions:
/// unions carry no validity buffer, view types list their variadic data buffers after the views.
/// A dictionary-encoded array has `type` = the dictionary's value type, `buffers` = [validity, indices],
/// and non-nil `encoding` and `dictionary`.
public struct ArrayData: Sendable {
    public let type: DataType
    public let length: Int
    public let nullCount: Int
    public let buffers: [ArrowBuffer]
    public let children: [ArrayData]
    /// Set for dictionary-encoded arrays.
    public let encoding: DictionaryEncoding?
    /// The dictionary the indices refer to, set for dictionary-encoded arrays.
    public let dictionary: DictionaryValues?

    /// Creates an array without validating it; ``RecordBatch/init(schema:columns:)`` and the readers
    /// validate before handing arrays out.
    public init(type: DataType, length: Int, nullCount: Int, buffers: [ArrowBuffer], children: [ArrayData] = [],
                encoding: DictionaryEncoding? = nil, dictionary: DictionaryValues? = nil) {
        self.type = type
        self.length = length
        self.nullCount = nullCount
        self.buffers = buffers
        self.children = children
        self.encoding = encoding
        self.dictionary = dictionary
    }

    /// Whether the layout of this array starts with a validity bitmap.
    public var hasValidityBuffer: Bool {
        if self.encoding != nil { return true }
        switch self.type {
        case .null, .union, .runEndEncoded: return false
        default: return true
        }
    }

    /// Whether slot `index` holds a value (false for nulls). Unions and run-end-encoded arrays have no
    /// validity of their own and answer true; null arrays answer false.
    public func isValid(_ index: Int) -> Bool {
        precondition(index >= 0 && index < self.length, "index \(index) out of range 0..<\(self.length)")
        if case .null = self.type, self.encoding == nil { return false }
        guard self.hasValidityBuffer, self.nullCount > 0 else { return true }
        return self.buffers[0].bit(index)
    }

    /// Total bytes of all buffers, children and dictionaries (shared storage counted once per reference).
    public var bufferBytes: Int {
        var total = self.buffers.reduce(0) { $0 + $1.count }
        for child in self.children { total += child.bufferBytes }
        return total
    }

    /// An empty (zero-length) array of `type`.
    public static func empty(_ type: DataType) -> ArrayData {
        let bufferCount: Int
        switch type {
        case .null, .runEndEncoded: bufferCount = 0
        case .structType, .fixedSizeList: bufferCount = 1
        case let .union(mode, _, _): bufferCount = mode == .sparse ? 1 : 2
        case .binary, .utf8, .largeBinary, .largeUtf8, .listView, .largeListView: bufferCount = 3
        default: bufferCount = 2
        }
        return ArrayData(type: type, length: 0, nullCount: 0,
                         buffers: Array(repeating: .empty, count: bufferCount),
                         children: type.children.map { child in
                             if let encoding = child.dictionary {
                                 return ArrayData(type: child.type, length: 0, nullCount: 0, buffers: [.empty, .empty],
                                                  encoding: encoding, dictionary: DictionaryValues(.empty(child.type)))
                             }
                             return .empty(child.type)
                         })
    }
}

/// Identity of a dictionary across deltas: a replacement gets a new lineage, a delta keeps it.
public final class DictionaryLineage: Sendable {
    public init() {}
}

/// The values of a dictionary: the first batch and any deltas appended after it, kept as chunks so
/// that nothing is copied.
public struct DictionaryValues: Sendable {
    public let chunks: [ArrayData]
    public let lineage: DictionaryLineage
    /// Total number of values over all chunks.
    public let length: Int

    /// A new dictionary (a new lineage) holding `values`.
    public init(_ values: ArrayData) {
        self.chunks = [values]
        self.lineage = DictionaryLineage()
        self.length = values.length
    }

    private init(chunks: [ArrayData], lineage: DictionaryLineage) {
        self.chunks = chunks
        self.lineage = lineage
        self.length = chunks.reduce(0) { $0 + $1.length }
    }

    /// This dictionary with `delta` appended (same lineage).
    public func appending(_ delta: ArrayData) -> DictionaryValues {
        DictionaryValues(chunks: self.chunks + [delta], lineage: self.lineage)
    }

    /// The chunk holding dictionary index `index`, and the index within that chunk.
    public func locate(_ index: Int) -> (chunk: ArrayData, index: Int)? {
        guard index >= 0 else { return nil }
        var remaining = index
        for chunk in self.chunks {
            if remaining < chunk.length { return (chunk, remaining) }
            remaining -= chunk.length
        }
        return nil
    }
}

/// A schema plus one array per field, all of the same length.
public struct RecordBatch: Sendable {
    public let schema: Schema
    public let length: Int
    public let columns: [ArrayData]

    init(uncheckedSchema schema: Schema, length: Int, columns: [ArrayData]) {
        self.schema = schema
        self.length = length
        self.columns = columns
    }

    /// Builds a record batch from columns, checking them against the schema like a received batch
    /// (types, lengths, buffer sizes).
    ///
    /// - Throws: ``ArrowIPCError`` naming the first column that does not fit.
    public init(schema: Schema, columns: [ArrayData]) throws(ArrowIPCError) {
        guard schema.fields.count == columns.count else {
            throw .invalidData(field: "<batch>", reason: "\(columns.count) columns for \(schema.fields.count) fields")
        }
        let length = columns.first?.length ?? 0
        for (field, column) in zip(schema.fields, columns) {
            try StructuralValidator.check(column, against: field)
            guard column.length == length else {
                throw .invalidData(field: field.name, reason: "length \(column.length) differs from the batch length \(length)")
            }
        }
        self.init(uncheckedSchema: schema, length: length, columns: columns)
    }

    /// The column named `name`, if any.
    public func column(named name: String) -> ArrayData? {
        guard let index = self.schema.fields.firstIndex(where: { $0.name == name }) else { return nil }
        return self.columns[index]
    }

    /// Runs the full (O(data)) validation on every column: offsets, UTF-8, union type ids, dictionary
    /// indices, run ends, view references.
    ///
    /// - Throws: ``ArrowIPCError/invalidData(field:reason:)`` for the first problem found.
    public func validateFull() throws(ArrowIPCError) {
        for (field, column) in zip(self.schema.fields, self.columns) {
            try FullValidator.validate(column, name: field.name)
        }
    }
}
