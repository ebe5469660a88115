@testable import ArrowIPC
import Foundation
import Testing

/// Lengths, offsets and counts at the Int64 extremes, in metadata and in data, for every type family: each
/// is rejected with a specific ArrowIPCError (or, where Arrow allows it, accepted) and never traps.
@Suite struct OverflowTests {
    static let maxLength = Int(Int64.max)

    /// A stream: the schema, then each message framed (metadata padded to 8) and followed by its body.
    static func stream(_ schema: Schema, _ messages: [(Message, [UInt8])]) -> [UInt8] {
        var bytes = EncodedMessage.schema(schema).framedMetadata
        for (message, body) in messages {
            bytes += EncodedMessage.frame(header: message.encodeFlatbuffer()) + body
        }
        return bytes + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
    }

    /// The nodes and buffers of `column` (as the writer lays them out), and its body bytes.
    static func layout(_ column: ArrayData) -> (header: RecordBatchHeader, body: [UInt8]) {
        var body = BodyLayout()
        body.append(column)
        let header = RecordBatchHeader(length: column.length, nodes: body.nodes, buffers: body.locations,
                                       variadicBufferCounts: body.variadicCounts)
        return (header, body.slices.flatMap { Array($0) })
    }

    /// Reads every batch as the Flight server and `ipc inspect` do (full validation); returns the rows.
    static func readAll(_ bytes: [UInt8]) throws(ArrowIPCError) -> Int {
        switch IPCFormat.detect(bytes) {
        case .stream:
            var reader = try IPCStreamReader(bytes, options: .untrusted)
            _ = try reader.readAll()
            return reader.rowCount
        case .file:
            let reader = try IPCFileReader(bytes, options: .untrusted)
            return try reader.readAll().count
        }
    }

    /// One column `c` of `type` whose root node (and the batch) claims `length` rows, everything else empty.
    static func claimingLength(_ type: DataType, _ length: Int, dictionary: DictionaryEncoding? = nil) -> [UInt8] {
        let field = Field("c", type, dictionary: dictionary)
        var messages: [(Message, [UInt8])] = []
        var column = ArrayData.empty(type)
        if let dictionary {
            let values = Self.layout(.empty(type))
            messages.append((Message(header: .dictionaryBatch(DictionaryBatchHeader(id: dictionary.id, data: values.header, isDelta: false)),
                                     bodyLength: values.body.count), values.body))
            column = ArrayData(type: type, length: 0, nullCount: 0, buffers: [.empty, .empty], encoding: dictionary,
                               dictionary: DictionaryValues(.empty(type)))
        }
        var (header, body) = Self.layout(column)
        header.length = length
        header.nodes[0].length = length
        messages.append((Message(header: .recordBatch(header), bodyLength: body.count), body))
        return Self.stream(Schema([field]), messages)
    }

    static let item = Field("item", .int(.int32))
    static let entries = Field("entries", .structType([Field("key", .utf8, nullable: false), Field("value", .int(.int32))]),
                               nullable: false)

    /// Every type family with the error a root length of Int64.max must produce.
    static let familiesAtInt64Max: [(String, DataType, String)] = [
        ("utf8", .utf8, "length 9223372036854775807 leaves no room for its offsets"),
        ("binary", .binary, "length 9223372036854775807 leaves no room for its offsets"),
        ("large_utf8", .largeUtf8, "length 9223372036854775807 leaves no room for its offsets"),
        ("large_binary", .largeBinary, "length 9223372036854775807 leaves no room for its offsets"),
        ("list", .list(item), "length 9223372036854775807 leaves no room for its offsets"),
        ("large_list", .largeList(item), "length 9223372036854775807 leaves no room for its offsets"),
        ("map", .map(entries, keysSorted: false), "length 9223372036854775807 leaves no room for its offsets"),
        ("int64", .int(.int64), "size 9223372036854775807 × 8 overflows"),
        ("int8", .int(.int8), "values buffer has 0 bytes, 9223372036854775807 needed"),
        ("bool", .bool, "values buffer has 0 bytes, 1152921504606846976 needed"),
        ("decimal256", .decimal(precision: 40, scale: 2, bitWidth: 256), "size 9223372036854775807 × 32 overflows"),
        ("fixed_size_binary", .fixedSizeBinary(byteWidth: Int32.max), "size 9223372036854775807 × 2147483647 overflows"),
        ("fixed_size_list", .fixedSizeList(item, listSize: 3), "size 9223372036854775807 × 3 overflows"),
        ("binary_view", .binaryView, "size 9223372036854775807 × 16 overflows"),
        ("utf8_view", .utf8View, "size 9223372036854775807 × 16 overflows"),
        ("list_view", .listView(item), "size 9223372036854775807 × 4 overflows"),
        ("large_list_view", .largeListView(item), "size 9223372036854775807 × 8 overflows"),
        ("sparse_union", .union(.sparse, typeIDs: [5], children: [item]), "type ids buffer has 0 bytes, 9223372036854775807 needed"),
        ("dense_union", .union(.dense, typeIDs: nil, children: [item]), "type ids buffer has 0 bytes, 9223372036854775807 needed"),
        ("run_end_encoded", .runEndEncoded(runEnds: Field("run_ends", .int(.int64), nullable: false), values: item),
         "no runs for 9223372036854775807 values"),
    ]

    @Test(arguments: familiesAtInt64Max.map(\.0))
    func rootLengthAtInt64MaxIsRejected(family: String) throws {
        let (_, type, reason) = try #require(Self.familiesAtInt64Max.first { $0.0 == family })
        let bytes = Self.claimingLength(type, Self.maxLength)
        #expect(throws: ArrowIPCError.invalidData(field: "c", reason: reason)) { _ = try Self.readAll(bytes) }
        // The same with only structural validation (`ipc inspect` without --full would still be safe).
        #expect(throws: ArrowIPCError.invalidData(field: "c", reason: reason)) {
            var reader = try IPCStreamReader(bytes)
            _ = try reader.readAll()
        }
    }

    @Test func structWithShortChildrenAtInt64Max() throws {
        let bytes = Self.claimingLength(.structType([Self.item]), Self.maxLength)
        #expect(throws: ArrowIPCError.invalidData(field: "item", reason: "struct child has length 0, parent 9223372036854775807")) {
            _ = try Self.readAll(bytes)
        }
    }

    @Test func dictionaryIndicesAtInt64Max() throws {
        let bytes = Self.claimingLength(.utf8, Self.maxLength, dictionary: DictionaryEncoding(id: 7))
        #expect(throws: ArrowIPCError.invalidData(field: "c", reason: "size 9223372036854775807 × 4 overflows")) {
            _ = try Self.readAll(bytes)
        }
    }

    @Test(arguments: [Int(Int64.min), -1, Int(Int32.min), -(1 << 40)])
    func negativeNodeLengthsAreRejected(length: Int) throws {
        for type in [DataType.utf8, .int(.int64), .null, .list(Self.item)] {
            var (header, body) = Self.layout(.empty(type))
            header.nodes[0].length = length
            let bytes = Self.stream(Schema([Field("c", type)]), [(Message(header: .recordBatch(header), bodyLength: body.count), body)])
            #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch.nodes[0]",
                                                          reason: "length \(length) and null count 0 are inconsistent")) {
                _ = try Self.readAll(bytes)
            }
            header.nodes[0].length = 0
            header.length = length
            let negativeBatch = Self.stream(Schema([Field("c", type)]), [(Message(header: .recordBatch(header), bodyLength: body.count), body)])
            #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch.length", reason: "negative length \(length)")) {
                _ = try Self.readAll(negativeBatch)
            }
        }
    }

    @Test func nullCountBeyondLengthIsRejected() throws {
        var (header, body) = Self.layout(.empty(.utf8))
        header.nodes[0] = FieldNode(length: 1, nullCount: Self.maxLength)
        let bytes = Self.stream(Schema([Field("c", .utf8)]), [(Message(header: .recordBatch(header), bodyLength: body.count), body)])
        #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch.nodes[0]",
                                                      reason: "length 1 and null count 9223372036854775807 are inconsistent")) {
            _ = try Self.readAll(bytes)
        }
    }

    @Test func rowTotalsBeyondInt64MaxAreRejected() throws {
        // A null column needs no buffers, so Int64.max rows is legal once; twice overflows every row total.
        let (header, body) = Self.layout(ArrayData(type: .null, length: Self.maxLength, nullCount: 0, buffers: []))
        let message = Message(header: .recordBatch(header), bodyLength: body.count)
        let schema = Schema([Field("n", .null)])
        #expect(try Self.readAll(Self.stream(schema, [(message, body)])) == Self.maxLength)
        let twice = Self.stream(schema, [(message, body), (message, body)])
        let overflow = ArrowIPCError.invalidMessage(what: "stream", reason: "record batch lengths sum beyond 9223372036854775807 rows")
        #expect(throws: overflow) { _ = try Self.readAll(twice) }
        var decoder = IPCMessageDecoder()
        _ = try decoder.decode(header: EncodedMessage.schema(schema).metadata[...], body: [])
        let flatbuffer = message.encodeFlatbuffer()[...]
        _ = try decoder.decode(header: flatbuffer, body: [])
        #expect(decoder.rowCount == Self.maxLength)
        #expect(throws: overflow) { _ = try decoder.decode(header: flatbuffer, body: []) }
        #expect(decoder.rowCount == Self.maxLength)

        // The file reader's readAll checks the same total (so callers may add the lengths up).
        let batch = RecordBatch(uncheckedSchema: schema, length: Self.maxLength,
                                columns: [ArrayData(type: .null, length: Self.maxLength, nullCount: 0, buffers: [])])
        let file = try TestSupport.write(schema, [batch, batch], format: .file)
        let reader = try IPCFileReader(file, options: .untrusted)
        #expect(try reader.recordBatch(at: 1).length == Self.maxLength)
        #expect(throws: ArrowIPCError.invalidMessage(what: "file", reason: "record batch lengths sum beyond 9223372036854775807 rows")) {
            _ = try reader.readAll()
        }
    }

    @Test func deltaDictionaryLengthOverflowIsRejected() throws {
        let encoding = DictionaryEncoding(id: 3)
        let schema = Schema([Field("d", .null, dictionary: encoding)])
        func dictionary(_ length: Int, delta: Bool) -> (Message, [UInt8]) {
            let (header, body) = Self.layout(ArrayData(type: .null, length: length, nullCount: 0, buffers: []))
            return (Message(header: .dictionaryBatch(DictionaryBatchHeader(id: 3, data: header, isDelta: delta)), bodyLength: 0), body)
        }
        let bytes = Self.stream(schema, [dictionary(Self.maxLength, delta: false), dictionary(1, delta: true)])
        #expect(throws: ArrowIPCError.invalidMessage(what: "dictionary delta",
                                                      reason: "1 values after 9223372036854775807 overflow the dictionary length")) {
            _ = try Self.readAll(bytes)
        }
        let values = DictionaryValues(ArrayData(type: .null, length: Self.maxLength, nullCount: 0, buffers: []))
        #expect(throws: ArrowIPCError.self) {
            _ = try values.appending(ArrayData(type: .null, length: Self.maxLength, nullCount: 0, buffers: []))
        }
    }

    @Test func bufferLocationsAtInt64ExtremesAreRejected() throws {
        let (header, body) = Self.layout(.utf8(["ab", "c"]))
        let schema = Schema([Field("c", .utf8)])
        let cases: [(offset: Int, length: Int, expected: ArrowIPCError)] = [
            (Self.maxLength - 7, 0, .invalidMessage(what: "RecordBatch.buffers[1] of field 'c'",
                                                    reason: "bytes 9223372036854775800..<9223372036854775800 outside the body of 24 bytes")),
            (8, Self.maxLength, .invalidMessage(what: "RecordBatch.buffers[1]", reason: "offset 8 and length 9223372036854775807 are invalid")),
            (Int(Int64.min), 8, .invalidMessage(what: "RecordBatch.buffers[1]", reason: "offset -9223372036854775808 and length 8 are invalid")),
            (0, -1, .invalidMessage(what: "RecordBatch.buffers[1]", reason: "offset 0 and length -1 are invalid")),
            // offset + length = 2^63 does not fit an Int64: refused before anything adds them.
            (1 << 62, 1 << 62, .invalidMessage(what: "RecordBatch.buffers[1]",
                                               reason: "offset 4611686018427387904 and length 4611686018427387904 are invalid")),
        ]
        for (offset, length, expected) in cases {
            var damaged = header
            damaged.buffers[1] = BufferLocation(offset: offset, length: length)
            let bytes = Self.stream(schema, [(Message(header: .recordBatch(damaged), bodyLength: body.count), body)])
            #expect(throws: expected) { _ = try Self.readAll(bytes) }
        }
        // Largest aligned offset that passes the metadata checks still has to lie in the body.
        var far = header
        far.buffers[2] = BufferLocation(offset: 1 << 61, length: 8)
        let bytes = Self.stream(schema, [(Message(header: .recordBatch(far), bodyLength: body.count), body)])
        #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch.buffers[2] of field 'c'",
                                                      reason: "bytes 2305843009213693952..<2305843009213693960 outside the body of 24 bytes")) {
            _ = try Self.readAll(bytes)
        }
    }

    @Test func bodyAndMetadataLengthsAtExtremes() throws {
        let schema = Schema([Field("c", .int(.int64))])
        let (header, body) = Self.layout(.primitive([Int64(1)]))
        for bodyLength in [Self.maxLength, Int(Int32.max) << 5, -1, Int(Int64.min)] {
            let bytes = Self.stream(schema, [(Message(header: .recordBatch(header), bodyLength: bodyLength), body)])
            #expect(throws: ArrowIPCError.limitExceeded(what: "message body length", limit: IPCReadLimits.default.maxBodySize,
                                                         found: bodyLength)) {
                _ = try Self.readAll(bytes)
            }
        }
        for prefix: Int32 in [Int32.min, -2, Int32.max] {
            var bytes: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
            withUnsafeBytes(of: prefix.littleEndian) { bytes.append(contentsOf: $0) }
            #expect(throws: ArrowIPCError.self) { _ = try Self.readAll(bytes + [UInt8](repeating: 0, count: 16)) }
        }
    }

    @Test func variadicAndDictionaryIdsAtExtremes() throws {
        var (header, body) = Self.layout(.empty(.utf8View))
        header.variadicBufferCounts = [Self.maxLength]
        var bytes = Self.stream(Schema([Field("v", .utf8View)]), [(Message(header: .recordBatch(header), bodyLength: body.count), body)])
        #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch.variadicBufferCounts", reason: "invalid count 9223372036854775807")) {
            _ = try Self.readAll(bytes)
        }
        header.variadicBufferCounts = [Int(Int32.max)]
        bytes = Self.stream(Schema([Field("v", .utf8View)]), [(Message(header: .recordBatch(header), bodyLength: body.count), body)])
        #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch field 'v'", reason: "2147483647 variadic buffers announced, fewer present")) {
            _ = try Self.readAll(bytes)
        }
        for id in [Int64.min, Int64.max, -1] {
            let values = Self.layout(.utf8(["x"]))
            let message = Message(header: .dictionaryBatch(DictionaryBatchHeader(id: id, data: values.header, isDelta: false)),
                                  bodyLength: values.body.count)
            let stream = Self.stream(Schema([Field("d", .utf8, dictionary: DictionaryEncoding(id: 0))]), [(message, values.body)])
            #expect(throws: ArrowIPCError.invalidMessage(what: "DictionaryBatch", reason: "id \(id) is not used by the schema")) {
                _ = try Self.readAll(stream)
            }
        }
    }

    /// Column data (not metadata) at the extremes: offsets, sizes, view lengths, union offsets, run ends,
    /// dictionary indices. Full validation rejects each; nothing traps.
    @Test func dataValuesAtInt64ExtremesAreRejected() throws {
        func int32s(_ values: [Int32]) -> ArrowBuffer {
            var bytes: [UInt8] = []
            for value in values { value.append(to: &bytes) }
            return ArrowBuffer(bytes)
        }
        func int64s(_ values: [Int64]) -> ArrowBuffer {
            var bytes: [UInt8] = []
            for value in values { value.append(to: &bytes) }
            return ArrowBuffer(bytes)
        }
        let child = ArrayData.primitive([Int32(1), 2])
        let columns: [(Field, ArrayData)] = [
            (Field("large_utf8", .largeUtf8), ArrayData(type: .largeUtf8, length: 1, nullCount: 0,
                                                        buffers: [.empty, int64s([0, .max]), ArrowBuffer([0x61])])),
            (Field("large_list", .largeList(Self.item)), ArrayData(type: .largeList(Self.item), length: 2, nullCount: 0,
                                                                  buffers: [.empty, int64s([.min, 0, 2])], children: [child])),
            (Field("list_view", .listView(Self.item)), ArrayData(type: .listView(Self.item), length: 1, nullCount: 0,
                                                                buffers: [.empty, int32s([.max]), int32s([.max])], children: [child])),
            (Field("large_list_view", .largeListView(Self.item)), ArrayData(type: .largeListView(Self.item), length: 1, nullCount: 0,
                                                                           buffers: [.empty, int64s([.max]), int64s([.max])], children: [child])),
            (Field("utf8_view", .utf8View), ArrayData(type: .utf8View, length: 1, nullCount: 0,
                                                      buffers: [.empty, int32s([.max, 0x6161_6161, 0, .max]), ArrowBuffer([0x61])])),
            (Field("dense_union", .union(.dense, typeIDs: nil, children: [Self.item])),
             ArrayData(type: .union(.dense, typeIDs: nil, children: [Self.item]), length: 1, nullCount: 0,
                       buffers: [ArrowBuffer([0]), int32s([.max])], children: [child])),
            (Field("run_end_encoded", .runEndEncoded(runEnds: Field("run_ends", .int(.int64), nullable: false), values: Self.item)),
             ArrayData(type: .runEndEncoded(runEnds: Field("run_ends", .int(.int64), nullable: false), values: Self.item), length: 3,
                       nullCount: 0, buffers: [], children: [ArrayData(type: .int(.int64), length: 2, nullCount: 0, buffers: [.empty, int64s([.max, .min])]), child])),
        ]
        for (field, column) in columns {
            let schema = Schema([field])
            #expect(throws: ArrowIPCError.self, "\(field.name)") { try RecordBatch(schema: schema, columns: [column]).validateFull() }
            let batch = RecordBatch(uncheckedSchema: schema, length: column.length, columns: [column])
            let bytes = try TestSupport.write(batch.schema, [batch], format: .stream)
            #expect(throws: ArrowIPCError.self, "\(field.name) through the reader") { _ = try Self.readAll(bytes) }
        }
        // Dictionary indices at the extremes of int64 and uint64.
        for (type, index) in [(IntType.int64, UInt64(bitPattern: Int64.min)), (.int64, UInt64(Int64.max)), (.uint64, UInt64.max)] {
            let encoding = DictionaryEncoding(id: 0, indexType: type)
            var bytes: [UInt8] = []
            index.append(to: &bytes)
            let column = ArrayData(type: .utf8, length: 1, nullCount: 0, buffers: [.empty, ArrowBuffer(bytes)], encoding: encoding,
                                   dictionary: DictionaryValues(.utf8(["a"])))
            let schema = Schema([Field("d", .utf8, dictionary: encoding)])
            #expect(throws: ArrowIPCError.self) { try RecordBatch(schema: schema, columns: [column]).validateFull() }
            let batch = RecordBatch(uncheckedSchema: schema, length: 1, columns: [column])
            #expect(throws: ArrowIPCError.self) { _ = try Self.readAll(try TestSupport.write(batch.schema, [batch], format: .stream)) }
        }
    }

    @Test func fileFooterBlocksAtExtremes() throws {
        let schema = Schema([Field("c", .int(.int64))])
        let batch = try RecordBatch(schema: schema, columns: [.primitive([Int64(1), 2])])
        let file = try TestSupport.write(schema, [batch], format: .file)
        let reader = try IPCFileReader(file)
        let good = reader.footer.recordBatches[0]
        let cases: [FileBlock] = [
            FileBlock(offset: Self.maxLength, metadataLength: good.metadataLength, bodyLength: good.bodyLength),
            FileBlock(offset: Int(Int64.min), metadataLength: good.metadataLength, bodyLength: good.bodyLength),
            FileBlock(offset: good.offset, metadataLength: Int(Int32.min), bodyLength: good.bodyLength),
            FileBlock(offset: good.offset, metadataLength: good.metadataLength, bodyLength: Self.maxLength),
            FileBlock(offset: good.offset, metadataLength: good.metadataLength, bodyLength: -1),
            FileBlock(offset: good.offset + 4, metadataLength: good.metadataLength, bodyLength: good.bodyLength),
            FileBlock(offset: good.offset, metadataLength: good.metadataLength, bodyLength: good.bodyLength + 4),
        ]
        let prefix = Array(file[0..<(reader.footer.recordBatches[0].offset + good.metadataLength + good.bodyLength)]) + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
        for block in cases {
            let footer = FileFooter(schema: schema, dictionaries: [], recordBatches: [block]).encodeFlatbuffer()
            var bytes = prefix + footer
            withUnsafeBytes(of: Int32(footer.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes += Array("ARROW1".utf8)
            #expect(throws: ArrowIPCError.self, "\(block)") { _ = try IPCFileReader(bytes, options: .untrusted).readAll() }
        }
    }

    /// A chain of deltas, every batch kept: all batches share one lineage whose chunks were appended in place,
    /// each batch sees exactly the chunks that existed when it arrived, and our writer re-encodes the chain
    /// with one message per chunk (before, each delta rebuilt and re-summed the chunk list: O(n²)).
    @Test func longDeltaChainsAppendInPlace() throws {
        let count = 20_000
        let encoding = DictionaryEncoding(id: 1)
        let schema = Schema([Field("d", .utf8, dictionary: encoding)])
        var writer = IPCWriter(schema: schema, format: .stream)
        var dictionary = DictionaryValues(.utf8(["v0"]))
        for index in 0..<count {
            if index > 0 { dictionary = try dictionary.appending(.utf8(["v\(index)"])) }
            try writer.write(try RecordBatch(schema: schema, columns: [.dictionaryEncoded([Int32(index)], dictionary: dictionary, encoding: encoding)]))
        }
        writer.finish()
        var reader = try IPCStreamReader(writer.bytes(), options: .untrusted)
        let batches = try reader.readAll()
        #expect(batches.count == count && reader.dictionaryBatchCount == count && reader.rowCount == count)
        let lineage = try #require(batches.last?.columns[0].dictionary?.lineage)
        var sameLineage = true
        var snapshotsRight = true
        for (index, batch) in batches.enumerated() {
            guard let values = batch.columns[0].dictionary else { sameLineage = false; continue }
            sameLineage = sameLineage && values.lineage === lineage
            snapshotsRight = snapshotsRight && values.chunkCount == index + 1 && values.length == index + 1
        }
        #expect(sameLineage && snapshotsRight)
        let last = try #require(batches.last?.columns[0].dictionary)
        let located = try #require(last.locate(12_345))
        #expect(located.index == 0)
        #expect(try located.chunk.strings() == ["v12345"])
        #expect(last.locate(count) == nil && last.locate(-1) == nil)
        // Appending to an older snapshot forks: the newer one is untouched.
        let old = try #require(batches[9].columns[0].dictionary)
        let fork = try old.appending(.utf8(["other"]))
        #expect(fork.lineage !== lineage && fork.chunkCount == 11)
        #expect(try fork.chunk(10).strings() == ["other"])
        #expect(last.chunkCount == count)
        #expect(try last.chunk(10).strings() == ["v10"])
        // Re-encoding all batches writes each chunk once.
        var again = IPCWriter(schema: schema, format: .stream)
        for batch in batches { try again.write(batch) }
        again.finish()
        var reread = try IPCStreamReader(again.bytes(), options: .untrusted)
        #expect(try reread.readAll().count == count && reread.dictionaryBatchCount == count)
    }

    /// Every node length and buffer location of every record and dictionary batch of pyarrow's fixtures and
    /// Arrow's cpp-21 goldens (all type families), set in turn to Int64/Int32 extremes: never a trap; a
    /// rejection is always an ArrowIPCError.
    @Test func everyNodeAndBufferOfEveryFixtureAtExtremes() throws {
        let golden = TestSupport.arrowTesting.appendingPathComponent("arrow-ipc-stream/integration/cpp-21.0.0")
        let files = TestSupport.files(in: golden, suffixes: [".stream"], prefix: "generated_")
            + TestSupport.files(in: TestSupport.fixtures.appendingPathComponent("generated"), suffixes: [".arrows"])
        #expect(files.count >= 40)
        let lengths = [Self.maxLength, 1 << 62, Int(Int32.max) + 1]
        var mutations = 0
        var rejected = 0
        for file in files {
            let bytes = try TestSupport.read(file)
            // The largest fixtures add time, not type families (the cpp-21 goldens have every family).
            guard bytes.count <= 24 << 10 else { continue }
            var iterator = try IPCMessageIterator(bytes)
            var messages: [EncapsulatedMessage] = []
            while let message = try iterator.next() { messages.append(message) }
            for (position, original) in messages.enumerated() {
                let header: RecordBatchHeader
                switch original.message.header {
                case let .recordBatch(batch): header = batch
                case let .dictionaryBatch(dictionary): header = dictionary.data
                case .schema: continue
                }
                var variants: [RecordBatchHeader] = []
                for index in header.nodes.indices {
                    for length in lengths {
                        var changed = header
                        changed.nodes[index].length = length
                        variants.append(changed)
                        changed.length = length
                        variants.append(changed)
                    }
                }
                for index in header.buffers.indices {
                    for length in lengths {
                        var changed = header
                        changed.buffers[index].length = length
                        variants.append(changed)
                        changed.buffers[index] = BufferLocation(offset: length & ~7, length: 8)
                        variants.append(changed)
                    }
                }
                for variant in variants {
                    var message = original.message
                    switch message.header {
                    case let .dictionaryBatch(dictionary):
                        message.header = .dictionaryBatch(DictionaryBatchHeader(id: dictionary.id, data: variant, isDelta: dictionary.isDelta))
                    default:
                        message.header = .recordBatch(variant)
                    }
                    // The stream up to the damaged message (what follows cannot change how it is read).
                    var damaged: [UInt8] = []
                    for (other, encapsulated) in messages[0...position].enumerated() {
                        let flatbuffer = other == position ? message.encodeFlatbuffer() : Array(encapsulated.metadata)
                        damaged += EncodedMessage.frame(header: flatbuffer) + Array(encapsulated.body.bytes)
                    }
                    mutations += 1
                    do { _ = try Self.readAll(damaged) } catch { rejected += 1 }
                }
            }
        }
        #expect(mutations > 2000)
        #expect(rejected > mutations / 2, "\(rejected) of \(mutations) rejected")
    }
}
