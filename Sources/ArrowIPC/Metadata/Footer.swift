/// Location of one message in an IPC file (File.fbs `Block`).
public struct FileBlock: Sendable, Equatable {
    /// Byte offset of the message's continuation marker from the start of the file.
    public var offset: Int
    /// Length of the marker, length prefix and padded flatbuffer.
    public var metadataLength: Int
    public var bodyLength: Int

    public init(offset: Int, metadataLength: Int, bodyLength: Int) {
        self.offset = offset
        self.metadataLength = metadataLength
        self.bodyLength = bodyLength
    }
}

/// The footer of an IPC file (File.fbs `Footer`).
public struct FileFooter: Sendable, Equatable {
    public var schema: Schema
    public var dictionaries: [FileBlock]
    public var recordBatches: [FileBlock]
    public var customMetadata: [KeyValue]

    public init(schema: Schema, dictionaries: [FileBlock], recordBatches: [FileBlock], customMetadata: [KeyValue] = []) {
        self.schema = schema
        self.dictionaries = dictionaries
        self.recordBatches = recordBatches
        self.customMetadata = customMetadata
    }

    static func decode(_ flatbuffer: ArraySlice<UInt8>, limits: IPCReadLimits) throws(ArrowIPCError) -> FileFooter {
        let root = try FlatbufferBytes(flatbuffer).rootTable(what: "Footer")
        guard let schemaTable = try root.table(1, "schema") else {
            throw .invalidMessage(what: "Footer", reason: "schema is missing")
        }
        var decoder = SchemaDecoder(limits: limits, flatbufferSize: flatbuffer.count)
        let schema = try decoder.schema(schemaTable)
        func blocks(_ id: Int, _ name: String) throws(ArrowIPCError) -> [FileBlock] {
            guard let (start, count) = try root.vector(id, name, elementSize: 24) else { return [] }
            var result: [FileBlock] = []
            result.reserveCapacity(count)
            for index in 0..<count {
                let at = start + 24 * index
                let offset = try root.buffer.read(Int64.self, at: at, what: "Block.offset")
                let metadataLength = try root.buffer.read(Int32.self, at: at + 8, what: "Block.metaDataLength")
                let bodyLength = try root.buffer.read(Int64.self, at: at + 16, what: "Block.bodyLength")
                guard offset >= 0, metadataLength >= 8, bodyLength >= 0, offset < Int64(Int32.max) << 16,
                      bodyLength < Int64(Int32.max) << 16
                else {
                    throw .invalidMessage(what: "Footer.\(name)[\(index)]",
                                          reason: "offset \(offset), metadata length \(metadataLength), body length \(bodyLength)")
                }
                result.append(FileBlock(offset: Int(offset), metadataLength: Int(metadataLength), bodyLength: Int(bodyLength)))
            }
            return result
        }
        return FileFooter(schema: schema, dictionaries: try blocks(2, "dictionaries"),
                          recordBatches: try blocks(3, "recordBatches"),
                          customMetadata: try decoder.keyValues(root, id: 4))
    }

    func encodeFlatbuffer() -> [UInt8] {
        var builder = FlatbufferBuilder(capacity: 512)
        let schema = MetadataEncoder.schema(self.schema, &builder)
        let dictionaries = builder.createStructVector(
            self.dictionaries.map { [Int64($0.offset), Int64($0.metadataLength), Int64($0.bodyLength)] }, structSize: 24)
        let batches = builder.createStructVector(
            self.recordBatches.map { [Int64($0.offset), Int64($0.metadataLength), Int64($0.bodyLength)] }, structSize: 24)
        let metadata = MetadataEncoder.keyValues(self.customMetadata, &builder)
        builder.startTable()
        builder.addOffset(1, schema)
        builder.addOffset(2, dictionaries)
        builder.addOffset(3, batches)
        builder.addOffset(4, metadata)
        builder.add(0, MetadataVersion.v5.rawValue, default: 0)
        return builder.finish(root: builder.endTable())
    }
}
