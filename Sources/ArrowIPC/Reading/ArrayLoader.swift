/// Turns a RecordBatch header plus its body into arrays whose buffers are views of the body, consuming
/// the pre-order nodes and buffers field by field (PROTOCOLS.md §1.4).
struct ArrayLoader {
    let header: RecordBatchHeader
    let body: ArrowBuffer
    let version: MetadataVersion
    let dictionaries: [Int64: DictionaryValues]
    private var nodeIndex = 0
    private var bufferIndex = 0
    private var variadicIndex = 0
    /// Set for compressed bodies: each buffer is decompressed as it is loaded.
    private var decompressor: BodyDecompressor?

    init(header: RecordBatchHeader, body: ArrowBuffer, version: MetadataVersion,
         dictionaries: [Int64: DictionaryValues], limits: IPCReadLimits = .default) throws(ArrowIPCError) {
        if let codec = header.compression {
            self.decompressor = BodyDecompressor(codec: codec, limit: limits.maxDecompressedSize)
        }
        self.header = header
        self.body = body
        self.version = version
        self.dictionaries = dictionaries
    }

    /// Loads one array per field and checks that every node and buffer was used.
    mutating func load(_ fields: [Field]) throws(ArrowIPCError) -> [ArrayData] {
        var columns: [ArrayData] = []
        columns.reserveCapacity(fields.count)
        for field in fields {
            let column = try self.load(field, depth: 1)
            // Dictionaries come from the reader's memo, whose chunks were checked once when they arrived.
            try StructuralValidator.check(column, against: field, checkDictionaries: false)
            columns.append(column)
        }
        guard self.nodeIndex == self.header.nodes.count else {
            throw .invalidMessage(what: "RecordBatch", reason: "\(self.header.nodes.count) field nodes, the schema uses \(self.nodeIndex)")
        }
        guard self.bufferIndex == self.header.buffers.count else {
            throw .invalidMessage(what: "RecordBatch", reason: "\(self.header.buffers.count) buffers, the schema uses \(self.bufferIndex)")
        }
        return columns
    }

    private mutating func nextNode(_ field: Field) throws(ArrowIPCError) -> FieldNode {
        guard self.nodeIndex < self.header.nodes.count else {
            throw .invalidMessage(what: "RecordBatch", reason: "too few field nodes (\(self.header.nodes.count)) at field '\(field.name)'")
        }
        defer { self.nodeIndex += 1 }
        return self.header.nodes[self.nodeIndex]
    }

    private mutating func nextBuffer(_ field: Field) throws(ArrowIPCError) -> ArrowBuffer {
        guard self.bufferIndex < self.header.buffers.count else {
            throw .invalidMessage(what: "RecordBatch", reason: "too few buffers (\(self.header.buffers.count)) at field '\(field.name)'")
        }
        let location = self.header.buffers[self.bufferIndex]
        // Arrow requires 8-byte aligned buffers (pyarrow refuses others): storing one would hand every
        // reader bytes it cannot read.
        guard location.offset & 7 == 0 else {
            throw .invalidMessage(what: "RecordBatch.buffers[\(self.bufferIndex)] of field '\(field.name)'",
                                  reason: "offset \(location.offset) is not a multiple of 8 (buffers must be 8-byte aligned)")
        }
        guard location.offset <= self.body.count, location.length <= self.body.count - location.offset else {
            throw .invalidMessage(what: "RecordBatch.buffers[\(self.bufferIndex)] of field '\(field.name)'",
                                  reason: "bytes \(location.offset)..<\(location.offset + location.length) outside the body of \(self.body.count) bytes")
        }
        self.bufferIndex += 1
        let buffer = self.body.slice(offset: location.offset, count: location.length)
        guard var decompressor = self.decompressor else { return buffer }
        defer { self.decompressor = decompressor }
        let index = self.bufferIndex - 1
        return try decompressor.decompress(buffer, what: "RecordBatch.buffers[\(index)] of field '\(field.name)'")
    }

    private mutating func buffers(_ count: Int, _ field: Field) throws(ArrowIPCError) -> [ArrowBuffer] {
        var result: [ArrowBuffer] = []
        result.reserveCapacity(count)
        for _ in 0..<count { result.append(try self.nextBuffer(field)) }
        return result
    }

    private mutating func load(_ field: Field, depth: Int) throws(ArrowIPCError) -> ArrayData {
        guard depth <= 1024 else { throw .limitExceeded(what: "field nesting depth", limit: 1024, found: depth) }
        let node = try self.nextNode(field)
        if let encoding = field.dictionary {
            let buffers = try self.buffers(2, field)
            var dictionary = self.dictionaries[encoding.id]
            if dictionary == nil {
                guard node.nullCount == node.length else {
                    throw .invalidMessage(what: "RecordBatch field '\(field.name)'",
                                          reason: "dictionary \(encoding.id) has not been sent")
                }
                dictionary = DictionaryValues(.empty(field.type))
            }
            return ArrayData(type: field.type, length: node.length, nullCount: node.nullCount, buffers: buffers,
                             encoding: encoding, dictionary: dictionary)
        }
        var buffers: [ArrowBuffer]
        switch field.type {
        case .null, .runEndEncoded:
            buffers = []
        case .structType, .fixedSizeList:
            buffers = try self.buffers(1, field)
        case let .union(mode, _, _):
            if self.version < .v5 { _ = try self.nextBuffer(field) }
            buffers = try self.buffers(mode == .sparse ? 1 : 2, field)
        case .binary, .utf8, .largeBinary, .largeUtf8, .listView, .largeListView:
            buffers = try self.buffers(3, field)
        case .binaryView, .utf8View:
            buffers = try self.buffers(2, field)
            guard self.variadicIndex < self.header.variadicBufferCounts.count else {
                throw .invalidMessage(what: "RecordBatch field '\(field.name)'", reason: "variadicBufferCounts is missing an entry")
            }
            let variadic = self.header.variadicBufferCounts[self.variadicIndex]
            self.variadicIndex += 1
            guard variadic <= self.header.buffers.count - self.bufferIndex else {
                throw .invalidMessage(what: "RecordBatch field '\(field.name)'", reason: "\(variadic) variadic buffers announced, fewer present")
            }
            buffers += try self.buffers(variadic, field)
        default:
            buffers = try self.buffers(2, field)
        }
        var children: [ArrayData] = []
        for child in field.type.children {
            children.append(try self.load(child, depth: depth + 1))
        }
        return ArrayData(type: field.type, length: node.length, nullCount: node.nullCount, buffers: buffers, children: children)
    }
}
