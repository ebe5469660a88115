internal import Synchronization

/// One Arrow array: its type, length, null count, buffers and children. Buffers are zero-copy views
/// into the bytes the array was read from (or the arrays it was built from).
///
/// Buffers follow the IPC layout of the type (PROTOCOLS.md §1.4), with the V5 conventions:
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
///
/// The lineage also owns the chunks appended to it, in order, so that appending a delta costs O(1)
/// however many earlier ``DictionaryValues`` (snapshots of a prefix of the chunks) are still alive.
public final class DictionaryLineage: Sendable {
    struct Chunks {
        var arrays: [ArrayData] = []
        /// `ends[i]`: number of values in chunks 0...i.
        var ends: [Int] = []
        /// How many leading chunks passed the structural checks (against the type of chunk 0).
        var checked = 0
    }

    private let storage = Mutex(Chunks())

    public init() {}

    /// Appends `chunk` if the lineage holds exactly `expectedCount` chunks; false if another snapshot
    /// appended first (the caller then forks a new lineage).
    func append(_ chunk: ArrayData, expectedCount: Int, end: Int) -> Bool {
        self.storage.withLock { chunks in
            guard chunks.arrays.count == expectedCount else { return false }
            chunks.arrays.append(chunk)
            chunks.ends.append(end)
            return true
        }
    }

    /// Number of leading chunks that passed ``StructuralValidator`` already: a batch built on a grown
    /// dictionary checks only the chunks added since (O(new chunks), not O(all chunks), per batch).
    var checkedCount: Int { self.storage.withLock { $0.checked } }

    func markChecked(_ count: Int) {
        self.storage.withLock { $0.checked = max($0.checked, min(count, $0.arrays.count)) }
    }

    func chunk(at index: Int) -> ArrayData {
        self.storage.withLock { $0.arrays[index] }
    }

    func chunks(_ range: Range<Int>) -> [ArrayData] {
        self.storage.withLock { Array($0.arrays[range]) }
    }

    /// The chunk among the first `count` holding value `index` (`0 <= index < ends[count - 1]`), and the
    /// index within it: a binary search over the running totals.
    func locate(_ index: Int, count: Int) -> (chunk: ArrayData, index: Int) {
        self.storage.withLock { chunks in
            var low = 0
            var high = count - 1
            while low < high {
                let middle = low + (high - low) / 2
                if chunks.ends[middle] > index { high = middle } else { low = middle + 1 }
            }
            let start = low == 0 ? 0 : chunks.ends[low - 1]
            return (chunks.arrays[low], index - start)
        }
    }
}

/// The values of a dictionary: the first batch and any deltas appended after it, kept as chunks so
/// that nothing is copied. A value is a snapshot of the first `chunkCount` chunks of its lineage;
/// appending a delta is O(1), so a chain of n deltas costs O(n) in all.
public struct DictionaryValues: Sendable {
    public let lineage: DictionaryLineage
    /// Total number of values over all chunks.
    public let length: Int
    /// Number of chunks (the first batch plus the deltas).
    public let chunkCount: Int

    /// A new dictionary (a new lineage) holding `values`.
    public init(_ values: ArrayData) {
        self.lineage = DictionaryLineage()
        _ = self.lineage.append(values, expectedCount: 0, end: values.length)
        self.length = values.length
        self.chunkCount = 1
    }

    private init(lineage: DictionaryLineage, length: Int, chunkCount: Int) {
        self.lineage = lineage
        self.length = length
        self.chunkCount = chunkCount
    }

    /// Every chunk in order (a new array: O(chunks); prefer ``chunk(_:)`` in loops).
    public var chunks: [ArrayData] { self.lineage.chunks(0..<self.chunkCount) }

    /// Chunk `index` (`0 ..< chunkCount`).
    public func chunk(_ index: Int) -> ArrayData {
        precondition(index >= 0 && index < self.chunkCount, "chunk \(index) of \(self.chunkCount)")
        return self.lineage.chunk(at: index)
    }

    /// The type of the values (that of the first chunk).
    public var valueType: DataType { self.chunk(0).type }

    /// This dictionary with `delta` appended (same lineage), in O(1) unless this snapshot is not the
    /// lineage's latest (then its chunks are copied into a new lineage).
    ///
    /// - Throws: ``ArrowIPCError/invalidMessage(what:reason:)`` if the total length would overflow `Int`.
    public func appending(_ delta: ArrayData) throws(ArrowIPCError) -> DictionaryValues {
        let (total, overflow) = self.length.addingReportingOverflow(delta.length)
        guard !overflow else {
            throw .invalidMessage(what: "dictionary delta",
                                  reason: "\(delta.length) values after \(self.length) overflow the dictionary length")
        }
        if self.lineage.append(delta, expectedCount: self.chunkCount, end: total) {
            return DictionaryValues(lineage: self.lineage, length: total, chunkCount: self.chunkCount + 1)
        }
        // Another snapshot of this lineage grew first: fork (a different dictionary from here on).
        let fork = DictionaryLineage()
        var end = 0
        for (index, chunk) in (self.chunks + [delta]).enumerated() {
            end += chunk.length  // no overflow: every prefix sum is at most `total`
            _ = fork.append(chunk, expectedCount: index, end: end)
        }
        return DictionaryValues(lineage: fork, length: total, chunkCount: self.chunkCount + 1)
    }

    /// The chunk holding dictionary index `index`, and the index within that chunk (O(log chunks)).
    public func locate(_ index: Int) -> (chunk: ArrayData, index: Int)? {
        guard index >= 0, index < self.length else { return nil }
        return self.lineage.locate(index, count: self.chunkCount)
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
