/// One IPC message ready to send: its flatbuffer header and its body as a list of slices. The body
/// slices are the arrays' own buffers plus shared zero padding, never copies.
public struct EncodedMessage: Sendable {
    /// The `Message` flatbuffer, zero-padded so that `8 + metadata.count` is a multiple of 8.
    public let metadata: [UInt8]
    /// Body buffers and padding in order; their total size is `bodyLength`.
    public let body: [ArraySlice<UInt8>]
    public let bodyLength: Int

    /// The 8-byte prefix (continuation marker, metadata length) followed by the metadata.
    public var framedMetadata: [UInt8] { Self.frame(header: self.metadata) }

    /// Frames a `Message` flatbuffer for a stream: continuation marker, length, the flatbuffer, zero padding
    /// to a multiple of 8 (a flatbuffer received without its framing, e.g. Flight's `data_header`).
    public static func frame(header: some Collection<UInt8>) -> [UInt8] {
        let padding = (8 - header.count % 8) % 8
        var framed: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        framed.reserveCapacity(8 + header.count + padding)
        withUnsafeBytes(of: Int32(header.count + padding).littleEndian) { framed.append(contentsOf: $0) }
        framed.append(contentsOf: header)
        framed.append(contentsOf: repeatElement(0, count: padding))
        return framed
    }

    /// Encodes a message header whose body (possibly empty) is given as slices.
    public init(_ message: Message, body: [ArraySlice<UInt8>] = []) {
        var metadata = message.encodeFlatbuffer()
        let padding = (8 - (metadata.count & 7)) & 7
        metadata.append(contentsOf: repeatElement(0, count: padding))
        self.metadata = metadata
        self.body = body
        self.bodyLength = message.bodyLength
    }

    /// A Schema message.
    public static func schema(_ schema: Schema) -> EncodedMessage {
        EncodedMessage(Message(header: .schema(schema), bodyLength: 0))
    }

    /// A RecordBatch message for `columns` (which must match the schema they came with), compressed per
    /// `options` (each buffer compressed into a new array; uncompressed bodies are the arrays' own buffers).
    public static func recordBatch(length: Int, columns: [ArrayData], options: IPCWriteOptions = .default) -> EncodedMessage {
        var body = BodyLayout(options: options)
        for column in columns { body.append(column) }
        let header = RecordBatchHeader(length: length, nodes: body.nodes, buffers: body.locations,
                                       compression: options.compression, variadicBufferCounts: body.variadicCounts)
        return EncodedMessage(Message(header: .recordBatch(header), bodyLength: body.length), body: body.slices)
    }

    /// A DictionaryBatch message holding `values` for dictionary `id`, compressed per `options`.
    public static func dictionaryBatch(id: Int64, values: ArrayData, isDelta: Bool,
                                       options: IPCWriteOptions = .default) -> EncodedMessage {
        var body = BodyLayout(options: options)
        body.append(values)
        let data = RecordBatchHeader(length: values.length, nodes: body.nodes, buffers: body.locations,
                                     compression: options.compression, variadicBufferCounts: body.variadicCounts)
        let header = DictionaryBatchHeader(id: id, data: data, isDelta: isDelta)
        return EncodedMessage(Message(header: .dictionaryBatch(header), bodyLength: body.length), body: body.slices)
    }
}

/// Flattens arrays into the pre-order nodes and buffers of a RecordBatch, laying the buffers out
/// back to back, each padded to 8 bytes.
struct BodyLayout {
    private(set) var nodes: [FieldNode] = []
    private(set) var locations: [BufferLocation] = []
    private(set) var variadicCounts: [Int] = []
    private(set) var slices: [ArraySlice<UInt8>] = []
    private(set) var length = 0
    var options: IPCWriteOptions = .default

    init(options: IPCWriteOptions = .default) {
        self.options = options
    }

    /// Shared zero bytes used for padding.
    private static let zeros = [UInt8](repeating: 0, count: 8)

    private mutating func add(_ buffer: ArrowBuffer) {
        if let codec = self.options.compression, buffer.count > 0 {
            let (prefix, payload) = codec.compressBuffer(buffer, level: self.options.level)
            self.locations.append(BufferLocation(offset: self.length, length: prefix.count + payload.count))
            self.slices.append(prefix[...])
            self.slices.append(payload)
            self.pad(prefix.count + payload.count)
            return
        }
        self.locations.append(BufferLocation(offset: self.length, length: buffer.count))
        guard buffer.count > 0 else { return }
        self.slices.append(buffer.bytes)
        self.pad(buffer.count)
    }

    private mutating func pad(_ count: Int) {
        self.length += count
        let padding = (8 - (count & 7)) & 7
        if padding > 0 {
            self.slices.append(Self.zeros[0..<padding])
            self.length += padding
        }
    }

    mutating func append(_ array: ArrayData) {
        self.nodes.append(FieldNode(length: array.length, nullCount: array.nullCount))
        for (index, buffer) in array.buffers.enumerated() {
            // A validity bitmap with no nulls is not needed; write it empty as Arrow C++ does.
            if index == 0, array.hasValidityBuffer, array.nullCount == 0 {
                self.add(.empty)
            } else {
                self.add(buffer)
            }
        }
        if array.encoding != nil { return }
        switch array.type {
        case .binaryView, .utf8View: self.variadicCounts.append(array.buffers.count - 2)
        default: break
        }
        for child in array.children { self.append(child) }
    }
}
