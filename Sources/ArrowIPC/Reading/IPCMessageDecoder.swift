/// What one decoded IPC message contributed to a stream.
public enum IPCDecodedMessage: Sendable {
    case schema(Schema)
    /// A dictionary batch was applied (`isDelta` appended, else replaced or set).
    case dictionary(id: Int64, isDelta: Bool)
    case recordBatch(RecordBatch)
}

/// Decodes a stream message by message, for transports that carry IPC messages without the stream framing
/// (Flight's `FlightData`: flatbuffer header + body). Keeps the schema and the dictionaries between messages;
/// arrays are views of the given bodies.
public struct IPCMessageDecoder: Sendable {
    public let options: IPCReadOptions
    /// The schema, once the first message (which must be a Schema) was decoded.
    public private(set) var schema: Schema?
    /// Rows of every record batch decoded so far (their sum is checked: it never overflows).
    public private(set) var rowCount = 0
    private var memo: DictionaryMemo?

    public init(options: IPCReadOptions = .untrusted) {
        self.options = options
    }

    /// The dictionaries seen so far, by id.
    public var dictionaries: [Int64: DictionaryValues] { self.memo?.dictionaries ?? [:] }

    /// Decodes one message: `header` is the `Message` flatbuffer, `body` its body.
    ///
    /// - Throws: ``ArrowIPCError`` for malformed metadata or data, a body shorter than the header says or whose
    ///   length is not a multiple of 8, a
    ///   first message that is not a Schema, a second Schema, or record batches whose lengths sum beyond `Int.max`.
    public mutating func decode(header: ArraySlice<UInt8>, body: ArraySlice<UInt8>) throws(ArrowIPCError) -> IPCDecodedMessage {
        let message = try Message.decode(header, limits: self.options.limits)
        guard body.count >= message.bodyLength else {
            throw .invalidMessage(what: "\(message.header.kind) message",
                                  reason: "body has \(body.count) bytes, the header says \(message.bodyLength)")
        }
        // Writers pad bodies to 8 bytes; an unpadded one could not be re-framed as an aligned stream or file.
        guard message.bodyLength & 7 == 0 else {
            throw .invalidMessage(what: "\(message.header.kind) message",
                                  reason: "body length \(message.bodyLength) is not a multiple of 8 (bodies are padded to 8 bytes)")
        }
        // A longer body (extra padding from some writers) is accepted; only `bodyLength` bytes are used.
        return try self.apply(message, body: ArrowBuffer(body.prefix(message.bodyLength)))
    }

    mutating func apply(_ message: Message, body: ArrowBuffer) throws(ArrowIPCError) -> IPCDecodedMessage {
        switch message.header {
        case let .schema(schema):
            guard self.schema == nil else { throw .invalidMessage(what: "stream", reason: "a second Schema message") }
            try IPCStreamReader.checkSupported(schema)
            self.memo = try DictionaryMemo(schema: schema, allowReplacement: true)
            self.schema = schema
            return .schema(schema)
        case let .dictionaryBatch(header):
            guard self.schema != nil, var memo = self.memo else {
                throw .invalidMessage(what: "stream", reason: "a DictionaryBatch before the Schema")
            }
            self.memo = nil
            defer { self.memo = memo }
            try memo.add(header, body: body, version: message.version, fullValidation: self.options.validation == .full,
                         limits: self.options.limits)
            return .dictionary(id: header.id, isDelta: header.isDelta)
        case let .recordBatch(header):
            guard let schema = self.schema, let memo = self.memo else {
                throw .invalidMessage(what: "stream", reason: "a RecordBatch before the Schema")
            }
            let batch = try RecordBatchDecoder.decode(header, body: body, schema: schema, version: message.version,
                                                      dictionaries: memo.dictionaries, options: self.options)
            let (rows, overflow) = self.rowCount.addingReportingOverflow(batch.length)
            guard !overflow else {
                throw .invalidMessage(what: "stream", reason: "record batch lengths sum beyond \(Int.max) rows")
            }
            self.rowCount = rows
            return .recordBatch(batch)
        }
    }
}
