/// Reads an Arrow IPC file held in memory: `ARROW1` magic, a stream, the footer with the positions of
/// every dictionary and record batch, its length, and the closing magic. Random access by batch index;
/// batches are views of the input.
public struct IPCFileReader: Sendable {
    public let schema: Schema
    public let footer: FileFooter
    public let options: IPCReadOptions
    private let bytes: ArraySlice<UInt8>
    private let dictionaries: [Int64: DictionaryValues]

    /// Opens a file: checks both magics, decodes the footer and loads every dictionary.
    ///
    /// - Throws: ``ArrowIPCError`` for malformed files, big-endian data, or dictionary replacement.
    public init(_ bytes: ArraySlice<UInt8>, options: IPCReadOptions = .default) throws(ArrowIPCError) {
        let magic = IPCFormat.fileMagic
        guard bytes.count >= 6 + 2 + 4 + 6, bytes.starts(with: magic) else {
            throw .notArrowIPC(reason: "an IPC file starts with ARROW1 and is at least 18 bytes")
        }
        guard bytes.suffix(6).elementsEqual(magic) else {
            throw .invalidMessage(what: "file", reason: "the closing ARROW1 magic is missing (truncated file?)")
        }
        let base = bytes.startIndex
        let footerLengthAt = bytes.count - 10
        let footerLength = bytes.withUnsafeBytes { Int(Int32(littleEndian: $0.loadUnaligned(fromByteOffset: footerLengthAt, as: Int32.self))) }
        guard footerLength > 0, footerLength <= footerLengthAt - 8 else {
            throw .invalidMessage(what: "file footer", reason: "length \(footerLength) does not fit the file")
        }
        let footerStart = footerLengthAt - footerLength
        let footer = try FileFooter.decode(bytes[(base + footerStart)..<(base + footerLengthAt)], limits: options.limits)
        try IPCStreamReader.checkSupported(footer.schema)
        self.schema = footer.schema
        self.footer = footer
        self.options = options
        self.bytes = bytes[base..<(base + footerStart)]

        var memo = try DictionaryMemo(schema: footer.schema, allowReplacement: false)
        for (index, block) in footer.dictionaries.enumerated() {
            let encapsulated = try Self.message(at: block, in: self.bytes, limits: options.limits, what: "dictionary block \(index)")
            guard case let .dictionaryBatch(header) = encapsulated.message.header else {
                throw .invalidMessage(what: "dictionary block \(index)", reason: "holds a \(encapsulated.message.header.kind)")
            }
            try memo.add(header, body: encapsulated.body, version: encapsulated.message.version,
                         fullValidation: options.validation == .full, limits: options.limits)
        }
        self.dictionaries = memo.dictionaries
    }

    /// Opens a file held in an array (no copy).
    public init(_ bytes: [UInt8], options: IPCReadOptions = .default) throws(ArrowIPCError) {
        try self.init(bytes[...], options: options)
    }

    private static func message(at block: FileBlock, in bytes: ArraySlice<UInt8>, limits: IPCReadLimits,
                                what: String) throws(ArrowIPCError) -> EncapsulatedMessage {
        guard block.offset >= 8, block.offset < bytes.count else {
            throw .invalidMessage(what: what, reason: "offset \(block.offset) lies outside the file's messages")
        }
        // As Arrow C++ requires: messages start 8-byte aligned, so that their bodies and buffers are.
        guard block.offset & 7 == 0, block.bodyLength & 7 == 0 else {
            throw .invalidMessage(what: what, reason: "offset \(block.offset) or body length \(block.bodyLength) is not a multiple of 8")
        }
        var scanner = MessageScanner(bytes, position: block.offset, limits: limits)
        guard let encapsulated = try scanner.next() else {
            throw .invalidMessage(what: what, reason: "no message at offset \(block.offset)")
        }
        guard encapsulated.message.bodyLength == block.bodyLength else {
            throw .invalidMessage(what: what, reason: "body length \(encapsulated.message.bodyLength) differs from the footer's \(block.bodyLength)")
        }
        return encapsulated
    }

    /// Number of record batches in the file.
    public var recordBatchCount: Int { self.footer.recordBatches.count }

    /// Number of dictionary batches in the file.
    public var dictionaryBatchCount: Int { self.footer.dictionaries.count }

    /// The record batch at `index` (0-based).
    ///
    /// - Throws: ``ArrowIPCError`` for an index out of range or a malformed batch.
    public func recordBatch(at index: Int) throws(ArrowIPCError) -> RecordBatch {
        guard index >= 0, index < self.footer.recordBatches.count else {
            throw .invalidMessage(what: "file", reason: "record batch \(index) requested, the file has \(self.recordBatchCount)")
        }
        let encapsulated = try Self.message(at: self.footer.recordBatches[index], in: self.bytes, limits: self.options.limits,
                                            what: "record batch block \(index)")
        guard case let .recordBatch(header) = encapsulated.message.header else {
            throw .invalidMessage(what: "record batch block \(index)", reason: "holds a \(encapsulated.message.header.kind)")
        }
        return try RecordBatchDecoder.decode(header, body: encapsulated.body, schema: self.schema,
                                             version: encapsulated.message.version, dictionaries: self.dictionaries,
                                             options: self.options)
    }

    /// Every record batch in order.
    ///
    /// - Throws: as ``recordBatch(at:)``, and ``ArrowIPCError/invalidMessage(what:reason:)`` if the batches'
    ///   lengths sum beyond `Int.max` (so the caller may add them up).
    public func readAll() throws(ArrowIPCError) -> [RecordBatch] {
        var batches: [RecordBatch] = []
        var rows = 0
        for index in 0..<self.recordBatchCount {
            let batch = try self.recordBatch(at: index)
            let (sum, overflow) = rows.addingReportingOverflow(batch.length)
            guard !overflow else { throw .invalidMessage(what: "file", reason: "record batch lengths sum beyond \(Int.max) rows") }
            rows = sum
            batches.append(batch)
        }
        return batches
    }
}
