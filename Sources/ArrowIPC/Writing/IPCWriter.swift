/// Writes record batches as an Arrow IPC stream or file into a list of byte slices: each message's
/// header bytes followed by the batch's own buffers (no copies). Dictionaries are written before the
/// first batch that uses them; a dictionary that grew (same lineage, more chunks) is written as deltas,
/// a different dictionary as a replacement (streams only; files reject it).
///
/// ```swift
/// var writer = IPCWriter(schema: schema, format: .stream)
/// try writer.write(batch)
/// writer.finish()
/// let bytes = writer.bytes()          // or hand writer.segments to writev
/// ```
public struct IPCWriter: Sendable {
    public let schema: Schema
    public let format: IPCFormat
    /// Body compression of the record batches and dictionaries written.
    public let options: IPCWriteOptions
    /// The output not yet taken with `takeSegments()`, in order.
    public private(set) var segments: [ArraySlice<UInt8>] = []
    /// Total bytes in `segments` (including any already taken).
    public private(set) var byteCount = 0
    private var written: [Int64: (lineage: DictionaryLineage, chunks: Int)] = [:]
    private var dictionaryBlocks: [FileBlock] = []
    private var recordBatchBlocks: [FileBlock] = []
    private(set) var finished = false

    /// Starts a stream or file with `schema` (writes the file magic and the Schema message); `options`
    /// selects body compression (default none).
    public init(schema: Schema, format: IPCFormat, options: IPCWriteOptions = .default) {
        self.schema = schema
        self.format = format
        self.options = options
        if format == .file { self.append([UInt8]("ARROW1".utf8) + [0, 0]) }
        _ = self.append(.schema(schema))
    }

    private mutating func append(_ bytes: [UInt8]) {
        self.segments.append(bytes[...])
        self.byteCount += bytes.count
    }

    @discardableResult
    private mutating func append(_ message: EncodedMessage) -> FileBlock {
        let offset = self.byteCount
        let framed = message.framedMetadata
        self.append(framed)
        for slice in message.body {
            self.segments.append(slice)
            self.byteCount += slice.count
        }
        return FileBlock(offset: offset, metadataLength: framed.count, bodyLength: message.bodyLength)
    }

    /// Writes `batch` (and the dictionaries it needs first).
    ///
    /// - Throws: ``ArrowIPCError`` if the batch's schema differs from the writer's, if `finish()` was
    ///   called, or (files) if a dictionary would be replaced.
    public mutating func write(_ batch: RecordBatch) throws(ArrowIPCError) {
        guard !self.finished else { throw .invalidMessage(what: "writer", reason: "write after finish") }
        guard batch.schema.fields == self.schema.fields else {
            throw .invalidMessage(what: "writer", reason: "the batch's schema differs from the stream's schema")
        }
        for column in batch.columns { try self.writeDictionaries(of: column) }
        let block = self.append(EncodedMessage.recordBatch(length: batch.length, columns: batch.columns,
                                                              options: self.options))
        self.recordBatchBlocks.append(block)
    }

    private mutating func writeDictionaries(of array: ArrayData) throws(ArrowIPCError) {
        if let encoding = array.encoding, let dictionary = array.dictionary {
            var start = 0
            if let previous = self.written[encoding.id] {
                if previous.lineage === dictionary.lineage {
                    start = previous.chunks
                } else if self.format == .file {
                    throw .invalidMessage(what: "dictionary \(encoding.id)", reason: "IPC files cannot replace a dictionary")
                }
            }
            guard start < dictionary.chunkCount else { return }
            // Only the chunks not yet written (and the dictionaries nested in them): O(new chunks) per batch.
            for index in start..<dictionary.chunkCount {
                let chunk = dictionary.chunk(index)
                try self.writeDictionaries(of: chunk)
                let block = self.append(EncodedMessage.dictionaryBatch(
                    id: encoding.id, values: chunk, isDelta: index > 0, options: self.options))
                self.dictionaryBlocks.append(block)
            }
            self.written[encoding.id] = (dictionary.lineage, dictionary.chunkCount)
            return
        }
        for child in array.children { try self.writeDictionaries(of: child) }
    }

    /// Ends the stream (end-of-stream marker) or file (marker, footer, footer length, magic).
    public mutating func finish() {
        guard !self.finished else { return }
        self.finished = true
        self.append([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
        guard self.format == .file else { return }
        let footer = FileFooter(schema: self.schema, dictionaries: self.dictionaryBlocks, recordBatches: self.recordBatchBlocks)
        let flatbuffer = footer.encodeFlatbuffer()
        var tail = flatbuffer
        withUnsafeBytes(of: Int32(flatbuffer.count).littleEndian) { tail.append(contentsOf: $0) }
        tail.append(contentsOf: "ARROW1".utf8)
        self.append(tail)
    }

    /// Removes and returns the segments produced so far (to write them out incrementally).
    public mutating func takeSegments() -> [ArraySlice<UInt8>] {
        defer { self.segments.removeAll() }
        return self.segments
    }

    /// The output not yet taken, as one array (this copies; prefer `segments` for I/O).
    public func bytes() -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(self.segments.reduce(0) { $0 + $1.count })
        for segment in self.segments { result.append(contentsOf: segment) }
        return result
    }
}
