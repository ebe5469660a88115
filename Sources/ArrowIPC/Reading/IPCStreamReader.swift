/// Reads an Arrow IPC stream held in memory. Record batches are views of the input bytes: nothing is
/// copied. Bodies and buffers must lie on 8-byte boundaries of the stream, as Arrow requires (pyarrow refuses
/// others); loads are unaligned all the same, so a buffer's place in memory does not matter.
///
/// ```swift
/// var reader = try IPCStreamReader(bytes)
/// while let batch = try reader.next() { … }
/// ```
public struct IPCStreamReader: Sendable {
    /// The stream's schema (its first message).
    public let schema: Schema
    /// Metadata version of the schema message (V4 for pre-1.0 writers).
    public let version: MetadataVersion
    public let options: IPCReadOptions
    private var scanner: MessageScanner
    private var decoder: IPCMessageDecoder
    /// Number of dictionary batches read so far.
    public private(set) var dictionaryBatchCount = 0
    /// Number of record batches read so far.
    public private(set) var recordBatchCount = 0

    /// Opens a stream and reads its schema message.
    ///
    /// - Throws: ``ArrowIPCError`` if the bytes do not start with a valid Schema message, or the schema is
    ///   big-endian (rejected: byte swapping is not implemented).
    public init(_ bytes: ArraySlice<UInt8>, options: IPCReadOptions = .default) throws(ArrowIPCError) {
        self.options = options
        self.scanner = MessageScanner(bytes, limits: options.limits)
        guard let first = try self.scanner.next() else {
            throw .notArrowIPC(reason: "the stream ends before its schema message")
        }
        guard case let .schema(schema) = first.message.header else {
            throw .invalidMessage(what: "stream", reason: "the first message is a \(first.message.header.kind), not a Schema")
        }
        self.decoder = IPCMessageDecoder(options: options)
        _ = try self.decoder.apply(first.message, body: first.body)
        self.schema = schema
        self.version = first.message.version
    }

    /// Opens a stream held in an array (no copy).
    public init(_ bytes: [UInt8], options: IPCReadOptions = .default) throws(ArrowIPCError) {
        try self.init(bytes[...], options: options)
    }

    static func checkSupported(_ schema: Schema) throws(ArrowIPCError) {
        guard schema.endianness == .little else {
            throw .unsupported(what: "big-endian IPC data (this reader handles little-endian only)")
        }
    }

    /// The dictionaries read so far, by id.
    public var dictionaries: [Int64: DictionaryValues] { self.decoder.dictionaries }

    /// Rows of the record batches read so far.
    public var rowCount: Int { self.decoder.rowCount }

    /// Byte offset just past the last message read.
    public var position: Int { self.scanner.position }

    /// The next record batch, or nil at the end of the stream. Dictionary batches before it are applied.
    ///
    /// - Throws: ``ArrowIPCError`` for malformed messages or data that fails validation.
    public mutating func next() throws(ArrowIPCError) -> RecordBatch? {
        while let encapsulated = try self.scanner.next() {
            switch try self.decoder.apply(encapsulated.message, body: encapsulated.body) {
            case .schema:
                throw .invalidMessage(what: "stream", reason: "a second Schema message at byte \(encapsulated.offset)")
            case .dictionary:
                self.dictionaryBatchCount += 1
            case let .recordBatch(batch):
                self.recordBatchCount += 1
                return batch
            }
        }
        return nil
    }

    /// Reads every remaining record batch.
    public mutating func readAll() throws(ArrowIPCError) -> [RecordBatch] {
        var batches: [RecordBatch] = []
        while let batch = try self.next() { batches.append(batch) }
        return batches
    }
}

enum RecordBatchDecoder {
    static func decode(_ header: RecordBatchHeader, body: ArrowBuffer, schema: Schema, version: MetadataVersion,
                       dictionaries: [Int64: DictionaryValues], options: IPCReadOptions) throws(ArrowIPCError) -> RecordBatch {
        var loader = try ArrayLoader(header: header, body: body, version: version, dictionaries: dictionaries,
                                     limits: options.limits)
        let columns = try loader.load(schema.fields)
        for (field, column) in zip(schema.fields, columns) where column.length != header.length {
            throw .invalidData(field: field.name, reason: "length \(column.length) differs from the batch length \(header.length)")
        }
        if options.validation == .full {
            for (field, column) in zip(schema.fields, columns) {
                try FullValidator.validate(column, name: field.name, checkDictionaries: false)
            }
        }
        return RecordBatch(uncheckedSchema: schema, length: header.length, columns: columns)
    }
}
