/// IPC metadata versions (Schema.fbs `MetadataVersion`). We read V4 and V5 and write V5.
public enum MetadataVersion: Int16, Sendable, Equatable, Comparable {
    case v1 = 0, v2 = 1, v3 = 2, v4 = 3, v5 = 4

    public static func < (lhs: MetadataVersion, rhs: MetadataVersion) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Length and null count of one array in a record batch (Message.fbs `FieldNode`).
public struct FieldNode: Sendable, Equatable {
    public var length: Int
    public var nullCount: Int

    public init(length: Int, nullCount: Int) {
        self.length = length
        self.nullCount = nullCount
    }
}

/// Where one buffer lies in a message body (Message.fbs `Buffer`).
public struct BufferLocation: Sendable, Equatable {
    public var offset: Int
    public var length: Int

    public init(offset: Int, length: Int) {
        self.offset = offset
        self.length = length
    }
}

/// Body compression codecs (Message.fbs `CompressionType`).
public enum CompressionCodec: Int8, Sendable, Equatable, CustomStringConvertible {
    case lz4Frame = 0, zstd = 1

    public var description: String { self == .lz4Frame ? "LZ4_FRAME" : "ZSTD" }
}

/// A RecordBatch message header: the flattened nodes and buffers of the columns.
public struct RecordBatchHeader: Sendable, Equatable {
    public var length: Int
    public var nodes: [FieldNode]
    public var buffers: [BufferLocation]
    public var compression: CompressionCodec?
    /// One count per view-typed array (pre-order) of its variadic data buffers.
    public var variadicBufferCounts: [Int]

    public init(length: Int, nodes: [FieldNode], buffers: [BufferLocation], compression: CompressionCodec? = nil,
                variadicBufferCounts: [Int] = []) {
        self.length = length
        self.nodes = nodes
        self.buffers = buffers
        self.compression = compression
        self.variadicBufferCounts = variadicBufferCounts
    }
}

/// A DictionaryBatch message header.
public struct DictionaryBatchHeader: Sendable, Equatable {
    public var id: Int64
    public var data: RecordBatchHeader
    /// True when the batch appends to the dictionary, false when it replaces it.
    public var isDelta: Bool

    public init(id: Int64, data: RecordBatchHeader, isDelta: Bool) {
        self.id = id
        self.data = data
        self.isDelta = isDelta
    }
}

/// The header of one IPC message.
public enum MessageHeader: Sendable, Equatable {
    case schema(Schema)
    case dictionaryBatch(DictionaryBatchHeader)
    case recordBatch(RecordBatchHeader)

    /// The name used in error messages and `ipc inspect`.
    public var kind: String {
        switch self {
        case .schema: return "Schema"
        case .dictionaryBatch: return "DictionaryBatch"
        case .recordBatch: return "RecordBatch"
        }
    }
}

/// A decoded IPC message header (Message.fbs `Message`); the body is kept separately as a view.
public struct Message: Sendable, Equatable {
    public var version: MetadataVersion
    public var header: MessageHeader
    public var bodyLength: Int
    public var customMetadata: [KeyValue]

    public init(version: MetadataVersion = .v5, header: MessageHeader, bodyLength: Int, customMetadata: [KeyValue] = []) {
        self.version = version
        self.header = header
        self.bodyLength = bodyLength
        self.customMetadata = customMetadata
    }

    /// Decodes a `Message` flatbuffer (without the continuation marker and length prefix), checking every
    /// offset against `flatbuffer`.
    ///
    /// - Throws: ``ArrowIPCError`` for malformed or unsupported metadata (tensors, compressed bodies are
    ///   reported by the reader when the body is used).
    public static func decode(_ flatbuffer: ArraySlice<UInt8>, limits: IPCReadLimits = .default) throws(ArrowIPCError) -> Message {
        guard flatbuffer.count <= limits.maxMetadataSize else {
            throw .limitExceeded(what: "message metadata size", limit: limits.maxMetadataSize, found: flatbuffer.count)
        }
        let root = try FlatbufferBytes(flatbuffer).rootTable(what: "Message")
        let versionValue = try root.scalar(0, "version", default: Int16(0))
        guard let version = MetadataVersion(rawValue: versionValue) else {
            throw .invalidMessage(what: "Message.version", reason: "unknown metadata version \(versionValue)")
        }
        guard version >= .v4 else {
            throw .unsupported(what: "metadata version V\(versionValue + 1) (V4 and V5 are supported)")
        }
        let headerType = try root.scalar(1, "header_type", default: UInt8(0))
        let bodyLength64 = try root.scalar(3, "bodyLength", default: Int64(0))
        guard bodyLength64 >= 0, bodyLength64 <= Int64(limits.maxBodySize) else {
            throw .limitExceeded(what: "message body length", limit: limits.maxBodySize, found: Int(clamping: bodyLength64))
        }
        var decoder = SchemaDecoder(limits: limits, flatbufferSize: flatbuffer.count)
        let customMetadata = try decoder.keyValues(root, id: 4)
        guard let table = try root.table(2, "header") else {
            throw .invalidMessage(what: "Message", reason: "header is missing")
        }
        let header: MessageHeader
        switch headerType {
        case 1:
            header = .schema(try decoder.schema(table))
        case 2:
            let id = try table.scalar(0, "id", default: Int64(0))
            guard let data = try table.table(1, "data") else {
                throw .invalidMessage(what: "DictionaryBatch \(id)", reason: "data is missing")
            }
            header = .dictionaryBatch(DictionaryBatchHeader(
                id: id, data: try Self.recordBatch(data), isDelta: try table.bool(2, "isDelta", default: false)))
        case 3:
            header = .recordBatch(try Self.recordBatch(table))
        case 4, 5:
            throw .unsupported(what: "\(headerType == 4 ? "Tensor" : "SparseTensor") messages")
        default:
            throw .invalidMessage(what: "Message.header_type", reason: "unknown header type \(headerType)")
        }
        return Message(version: version, header: header, bodyLength: Int(bodyLength64), customMetadata: customMetadata)
    }

    static func recordBatch(_ table: FlatbufferTable) throws(ArrowIPCError) -> RecordBatchHeader {
        let length = try table.scalar(0, "length", default: Int64(0))
        guard length >= 0 else { throw .invalidMessage(what: "RecordBatch.length", reason: "negative length \(length)") }
        var nodes: [FieldNode] = []
        if let (start, count) = try table.vector(1, "nodes", elementSize: 16) {
            nodes.reserveCapacity(count)
            for index in 0..<count {
                let at = start + 16 * index
                let nodeLength = try table.buffer.read(Int64.self, at: at, what: "FieldNode.length")
                let nullCount = try table.buffer.read(Int64.self, at: at + 8, what: "FieldNode.null_count")
                guard nodeLength >= 0, nullCount >= 0, nullCount <= nodeLength else {
                    throw .invalidMessage(what: "RecordBatch.nodes[\(index)]",
                                          reason: "length \(nodeLength) and null count \(nullCount) are inconsistent")
                }
                nodes.append(FieldNode(length: Int(nodeLength), nullCount: Int(nullCount)))
            }
        }
        var buffers: [BufferLocation] = []
        if let (start, count) = try table.vector(2, "buffers", elementSize: 16) {
            buffers.reserveCapacity(count)
            for index in 0..<count {
                let at = start + 16 * index
                let offset = try table.buffer.read(Int64.self, at: at, what: "Buffer.offset")
                let bufferLength = try table.buffer.read(Int64.self, at: at + 8, what: "Buffer.length")
                guard offset >= 0, bufferLength >= 0, offset <= Int64.max - bufferLength else {
                    throw .invalidMessage(what: "RecordBatch.buffers[\(index)]",
                                          reason: "offset \(offset) and length \(bufferLength) are invalid")
                }
                buffers.append(BufferLocation(offset: Int(offset), length: Int(bufferLength)))
            }
        }
        var compression: CompressionCodec?
        if let compressionTable = try table.table(3, "compression") {
            let codec = try compressionTable.scalar(0, "codec", default: Int8(0))
            guard let known = CompressionCodec(rawValue: codec) else {
                throw .invalidMessage(what: "BodyCompression.codec", reason: "unknown codec \(codec)")
            }
            let method = try compressionTable.scalar(1, "method", default: Int8(0))
            guard method == 0 else { throw .unsupported(what: "body compression method \(method)") }
            compression = known
        }
        var variadic: [Int] = []
        for count in try table.scalars(4, "variadicBufferCounts", as: Int64.self) {
            guard count >= 0, count <= Int64(Int32.max) else {
                throw .invalidMessage(what: "RecordBatch.variadicBufferCounts", reason: "invalid count \(count)")
            }
            variadic.append(Int(count))
        }
        return RecordBatchHeader(length: Int(length), nodes: nodes, buffers: buffers, compression: compression,
                                 variadicBufferCounts: variadic)
    }
}
