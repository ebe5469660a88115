/// Encoding of ``Message`` headers and ``Schema``s into flatbuffers (always metadata version V5).
extension Message {
    /// The `Message` flatbuffer for this header, unpadded.
    public func encodeFlatbuffer() -> [UInt8] {
        var builder = FlatbufferBuilder(capacity: 512)
        let headerType: UInt8
        let header: FlatbufferBuilder.Offset
        switch self.header {
        case let .schema(schema):
            headerType = 1
            header = MetadataEncoder.schema(schema, &builder)
        case let .dictionaryBatch(dictionary):
            headerType = 2
            let data = MetadataEncoder.recordBatch(dictionary.data, &builder)
            builder.startTable()
            builder.add(0, dictionary.id, default: 0)
            builder.addOffset(1, data)
            builder.add(2, dictionary.isDelta, default: false)
            header = builder.endTable()
        case let .recordBatch(batch):
            headerType = 3
            header = MetadataEncoder.recordBatch(batch, &builder)
        }
        let metadata = MetadataEncoder.keyValues(self.customMetadata, &builder)
        builder.startTable()
        builder.add(3, Int64(self.bodyLength), default: 0)
        builder.addOffset(2, header)
        builder.addOffset(4, metadata)
        builder.add(0, MetadataVersion.v5.rawValue, default: 0)
        builder.add(1, headerType, default: 0)
        let root = builder.endTable()
        return builder.finish(root: root)
    }
}

enum MetadataEncoder {
    static func keyValues(_ entries: [KeyValue], _ builder: inout FlatbufferBuilder) -> FlatbufferBuilder.Offset? {
        guard !entries.isEmpty else { return nil }
        var tables: [FlatbufferBuilder.Offset] = []
        for entry in entries {
            let key = builder.createString(entry.key)
            let value = builder.createString(entry.value)
            builder.startTable()
            builder.addOffset(0, key)
            builder.addOffset(1, value)
            tables.append(builder.endTable())
        }
        return builder.createOffsetVector(tables)
    }

    static func schema(_ schema: Schema, _ builder: inout FlatbufferBuilder) -> FlatbufferBuilder.Offset {
        let fields = schema.fields.map { self.field($0, &builder) }
        let fieldVector = builder.createOffsetVector(fields)
        let metadata = self.keyValues(schema.metadata, &builder)
        let features = schema.features.isEmpty ? nil : builder.createScalarVector(schema.features)
        builder.startTable()
        builder.add(0, schema.endianness.rawValue, default: 0)
        builder.addOffset(1, fieldVector)
        builder.addOffset(2, metadata)
        builder.addOffset(3, features)
        return builder.endTable()
    }

    private static func intTable(_ type: IntType, _ builder: inout FlatbufferBuilder) -> FlatbufferBuilder.Offset {
        builder.startTable()
        builder.add(0, Int32(type.bitWidth), default: 0)
        builder.add(1, type.isSigned, default: false)
        return builder.endTable()
    }

    static func field(_ field: Field, _ builder: inout FlatbufferBuilder) -> FlatbufferBuilder.Offset {
        let name = builder.createString(field.name)
        let childOffsets = field.type.children.map { self.field($0, &builder) }
        let children = builder.createOffsetVector(childOffsets)
        let (typeID, typeTable) = self.typeTable(field.type, &builder)
        var dictionary: FlatbufferBuilder.Offset?
        if let encoding = field.dictionary {
            let indexType = self.intTable(encoding.indexType, &builder)
            builder.startTable()
            builder.add(0, encoding.id, default: 0)
            builder.addOffset(1, indexType)
            builder.add(2, encoding.isOrdered, default: false)
            dictionary = builder.endTable()
        }
        let metadata = self.keyValues(field.metadata, &builder)
        builder.startTable()
        builder.addOffset(0, name)
        builder.addOffset(3, typeTable)
        builder.addOffset(4, dictionary)
        builder.addOffset(5, children)
        builder.addOffset(6, metadata)
        builder.add(1, field.nullable, default: false)
        builder.add(2, typeID, default: 0)
        return builder.endTable()
    }

    // swiftlint:disable:next cyclomatic_complexity
    private static func typeTable(_ type: DataType, _ builder: inout FlatbufferBuilder) -> (UInt8, FlatbufferBuilder.Offset) {
        func empty(_ id: UInt8) -> (UInt8, FlatbufferBuilder.Offset) {
            builder.startTable()
            return (id, builder.endTable())
        }
        switch type {
        case .null: return empty(1)
        case let .int(intType): return (2, self.intTable(intType, &builder))
        case let .floatingPoint(precision):
            builder.startTable()
            builder.add(0, precision.rawValue, default: 0)
            return (3, builder.endTable())
        case .binary: return empty(4)
        case .utf8: return empty(5)
        case .bool: return empty(6)
        case let .decimal(precision, scale, bitWidth):
            builder.startTable()
            builder.add(0, precision, default: 0)
            builder.add(1, scale, default: 0)
            builder.add(2, bitWidth, default: 128)
            return (7, builder.endTable())
        case let .date(unit):
            builder.startTable()
            builder.add(0, unit.rawValue, default: DateUnit.millisecond.rawValue)
            return (8, builder.endTable())
        case let .time(unit, bitWidth):
            builder.startTable()
            builder.add(0, unit.rawValue, default: TimeUnit.millisecond.rawValue)
            builder.add(1, bitWidth, default: 32)
            return (9, builder.endTable())
        case let .timestamp(unit, timezone):
            let zone = timezone.map { builder.createString($0) }
            builder.startTable()
            builder.addOffset(1, zone)
            builder.add(0, unit.rawValue, default: 0)
            return (10, builder.endTable())
        case let .interval(unit):
            builder.startTable()
            builder.add(0, unit.rawValue, default: 0)
            return (11, builder.endTable())
        case .list: return empty(12)
        case .structType: return empty(13)
        case let .union(mode, typeIDs, _):
            let ids = typeIDs.map { builder.createScalarVector($0) }
            builder.startTable()
            builder.addOffset(1, ids)
            builder.add(0, mode.rawValue, default: 0)
            return (14, builder.endTable())
        case let .fixedSizeBinary(width):
            builder.startTable()
            builder.add(0, width, default: 0)
            return (15, builder.endTable())
        case let .fixedSizeList(_, size):
            builder.startTable()
            builder.add(0, size, default: 0)
            return (16, builder.endTable())
        case let .map(_, keysSorted):
            builder.startTable()
            builder.add(0, keysSorted, default: false)
            return (17, builder.endTable())
        case let .duration(unit):
            builder.startTable()
            builder.add(0, unit.rawValue, default: TimeUnit.millisecond.rawValue)
            return (18, builder.endTable())
        case .largeBinary: return empty(19)
        case .largeUtf8: return empty(20)
        case .largeList: return empty(21)
        case .runEndEncoded: return empty(22)
        case .binaryView: return empty(23)
        case .utf8View: return empty(24)
        case .listView: return empty(25)
        case .largeListView: return empty(26)
        }
    }

    static func recordBatch(_ batch: RecordBatchHeader, _ builder: inout FlatbufferBuilder) -> FlatbufferBuilder.Offset {
        let nodes = builder.createStructVector(batch.nodes.map { [Int64($0.length), Int64($0.nullCount)] }, structSize: 16)
        let buffers = builder.createStructVector(batch.buffers.map { [Int64($0.offset), Int64($0.length)] }, structSize: 16)
        let variadic = batch.variadicBufferCounts.isEmpty ? nil : builder.createScalarVector(batch.variadicBufferCounts.map { Int64($0) })
        var compression: FlatbufferBuilder.Offset?
        if let codec = batch.compression {
            builder.startTable()
            builder.add(0, codec.rawValue, default: 0)
            compression = builder.endTable()
        }
        builder.startTable()
        builder.add(0, Int64(batch.length), default: 0)
        builder.addOffset(1, nodes)
        builder.addOffset(2, buffers)
        builder.addOffset(3, compression)
        builder.addOffset(4, variadic)
        return builder.endTable()
    }
}
