@testable import ArrowIPC
import Foundation
import Testing

@Suite struct BuilderAndAccessorTests {
    static let listItem = Field("item", .int(.int64))
    static let structFields = [Field("a", .int(.int32)), Field("b", .utf8)]
    static let encoding = DictionaryEncoding(id: 7, indexType: .int32, isOrdered: false)

    static func sampleBatch() throws -> RecordBatch {
        let schema = Schema([
            Field("id", .int(.int64), nullable: false),
            Field("score", .floatingPoint(.double)),
            Field("name", .utf8),
            Field("flag", .bool),
            Field("tags", .list(Self.listItem)),
            Field("pair", .structType(Self.structFields)),
            Field("color", .utf8, dictionary: Self.encoding),
            Field("at", .timestamp(.microsecond, timezone: "UTC")),
        ], metadata: [KeyValue("origin", "swift")])
        let dictionary = DictionaryValues(.utf8(["red", "green", "blue"]))
        let columns: [ArrayData] = [
            .primitive([Int64(1), 2, 3, 4]),
            .primitive([1.5, nil, -0.0, .infinity]),
            .utf8(["alpha", nil, "", "δέλτα"]),
            .bool([true, false, nil, true]),
            .list(.primitive([Int64(10), 11, 12]), field: Self.listItem, offsets: [0, 2, 2, 2, 3], valid: [true, true, false, true]),
            .structArray(Self.structFields, children: [.primitive([Int32(1), 2, 3, 4]), .utf8(["x", "y", nil, "z"])],
                         length: 4, valid: [true, false, true, true]),
            .dictionaryEncoded([2, 0, nil, 1], dictionary: dictionary, encoding: Self.encoding),
            .primitive([Int64(1_700_000_000_000_000), nil, 0, -1], type: .timestamp(.microsecond, timezone: "UTC")),
        ]
        return try RecordBatch(schema: schema, columns: columns)
    }

    @Test func typedAccessorsReadBuiltValues() throws {
        let batch = try Self.sampleBatch()
        #expect(Array(try batch.columns[0].values(as: Int64.self)) == [1, 2, 3, 4])
        let scores = try batch.columns[1].values(as: Double.self)
        #expect(scores[0] == 1.5 && scores[1] == nil && scores[2]?.sign == .minus && scores[3] == .infinity)
        #expect(try batch.columns[2].strings() == ["alpha", nil, "", "δέλτα"])
        #expect(Array(try batch.columns[3].bools()) == [true, false, nil, true])
        #expect(Array(try batch.columns[7].values(as: Int64.self)) == [1_700_000_000_000_000, nil, 0, -1])
        #expect(throws: ArrowIPCError.typeMismatch(expected: "a column readable as Int32", found: "int64")) {
            _ = try batch.columns[0].values(as: Int32.self)
        }
        #expect(throws: ArrowIPCError.self) { _ = try batch.columns[0].strings() }
        #expect(batch.column(named: "name")?.nullCount == 1)
        try batch.validateFull()
    }

    @Test func builtBatchesRoundTripThroughOurReaderAndPyarrow() throws {
        let batch = try Self.sampleBatch()
        for format in [IPCFormat.stream, .file] {
            let bytes = try TestSupport.write(batch.schema, [batch, batch], format: format)
            let (schema, batches) = try TestSupport.readAll(bytes)
            #expect(schema == batch.schema)
            #expect(batches.count == 2)
            #expect(CanonicalDump.dump(batches) == CanonicalDump.dump([batch, batch]))
            let (status, output, errors) = try TestSupport.runPythonCode("""
                import sys, pyarrow as pa
                data = sys.stdin.buffer.read()
                reader = pa.ipc.open_file(data) if data[:6] == b"ARROW1" else pa.ipc.open_stream(data)
                t = reader.read_all()
                assert t.schema.metadata == {b"origin": b"swift"}, t.schema.metadata
                assert t.num_rows == 8
                assert t.column("id").to_pylist()[:4] == [1, 2, 3, 4]
                assert t.column("name").to_pylist()[:4] == ["alpha", None, "", "δέλτα"]
                assert t.column("flag").to_pylist()[:4] == [True, False, None, True]
                assert t.column("tags").to_pylist()[:4] == [[10, 11], [], None, [12]]
                assert t.column("pair").to_pylist()[:4] == [{"a": 1, "b": "x"}, None, {"a": 3, "b": None}, {"a": 4, "b": "z"}]
                assert t.column("color").to_pylist()[:4] == ["blue", "red", None, "green"]
                assert str(t.schema.field("at").type) == "timestamp[us, tz=UTC]"
                t.validate(full=True)
                print("ok")
                """, stdin: bytes)
            #expect(status == 0 && output == "ok\n", "pyarrow rejected our \(format.rawValue): \(errors)")
        }
    }

    @Test func recordBatchInitRejectsMismatchedColumns() throws {
        let schema = Schema([Field("a", .int(.int64)), Field("b", .utf8)])
        #expect(throws: ArrowIPCError.invalidData(field: "<batch>", reason: "1 columns for 2 fields")) {
            _ = try RecordBatch(schema: schema, columns: [.primitive([Int64(1)])])
        }
        #expect(throws: ArrowIPCError.invalidData(field: "b", reason: "length 2 differs from the batch length 1")) {
            _ = try RecordBatch(schema: schema, columns: [.primitive([Int64(1)]), .utf8(["x", "y"])])
        }
        #expect(throws: ArrowIPCError.invalidData(field: "b", reason: "array of type int64 where the schema says string")) {
            _ = try RecordBatch(schema: schema, columns: [.primitive([Int64(1)]), .primitive([Int64(2)])])
        }
    }

    @Test func readingIsZeroCopyAndWritingReusesTheBuffers() throws {
        let bytes = try TestSupport.read(TestSupport.fixtures.appendingPathComponent("generated/binary.arrows"))
        var reader = try IPCStreamReader(bytes)
        let batch = try #require(try reader.next())
        let inputRange: ClosedRange<UInt> = bytes.withUnsafeBytes { raw in
            UInt(bitPattern: raw.baseAddress!)...UInt(bitPattern: raw.baseAddress! + raw.count)
        }
        func address(_ slice: ArraySlice<UInt8>) -> UInt {
            slice.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        }
        var checked = 0
        for column in batch.columns {
            for buffer in column.buffers where buffer.count > 0 {
                #expect(inputRange.contains(address(buffer.bytes)), "a column buffer does not point into the input")
                checked += 1
            }
        }
        #expect(checked > 5)
        // Every body slice the writer emits is either one of those views or shared padding.
        let message = EncodedMessage.recordBatch(length: batch.length, columns: batch.columns)
        let inside = message.body.filter { inputRange.contains(address($0)) }.reduce(0) { $0 + $1.count }
        let padding = message.body.filter { !inputRange.contains(address($0)) }
        #expect(inside == batch.columns.reduce(0) { total, column in
            total + column.buffers.enumerated().reduce(0) { sum, entry in
                sum + ((entry.offset == 0 && column.nullCount == 0) ? 0 : entry.element.count)
            }
        })
        #expect(padding.allSatisfy { $0.count < 8 && $0.allSatisfy { $0 == 0 } })
    }

    @Test func schemaFlatbuffersRoundTripEveryType() throws {
        let child = Field("c", .int(.int16), nullable: false)
        let types: [DataType] = [
            .null, .bool, .int(.uint8), .int(.int64), .floatingPoint(.half), .floatingPoint(.double),
            .decimal(precision: 9, scale: 2, bitWidth: 32), .decimal(precision: 76, scale: -3, bitWidth: 256),
            .date(.day), .date(.millisecond), .time(.second, bitWidth: 32), .time(.nanosecond, bitWidth: 64),
            .timestamp(.nanosecond, timezone: nil), .timestamp(.second, timezone: "Europe/Paris"), .duration(.microsecond),
            .interval(.yearMonth), .interval(.dayTime), .interval(.monthDayNano), .binary, .largeBinary, .utf8, .largeUtf8,
            .binaryView, .utf8View, .fixedSizeBinary(byteWidth: 16), .list(child), .largeList(child), .listView(child),
            .largeListView(child), .fixedSizeList(child, listSize: 3), .structType([child, Field("d", .utf8)]),
            .map(Field("entries", .structType([Field("key", .utf8, nullable: false), Field("value", .int(.int32))]), nullable: false),
                 keysSorted: true),
            .union(.sparse, typeIDs: nil, children: [child]), .union(.dense, typeIDs: [5, 10], children: [child, Field("s", .utf8)]),
            .runEndEncoded(runEnds: Field("run_ends", .int(.int32), nullable: false), values: Field("values", .utf8)),
        ]
        let fields = types.enumerated().map { Field("f\($0.offset)", $0.element, metadata: [KeyValue("k", "v\($0.offset)")]) }
            + [Field("dict", .utf8, dictionary: DictionaryEncoding(id: 3, indexType: .uint16, isOrdered: true))]
        let schema = Schema(fields, metadata: [KeyValue(key: [0xFF, 0x00], value: [0x01, 0xFE])])
        let encoded = EncodedMessage.schema(schema)
        let decoded = try Message.decode(encoded.metadata[...])
        #expect(decoded.header == .schema(schema))
        #expect(decoded.version == .v5)
        // pyarrow agrees on the same bytes.
        let stream = encoded.framedMetadata + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
        let (status, output, errors) = try TestSupport.runPythonCode("""
            import sys, pyarrow as pa
            s = pa.ipc.open_stream(sys.stdin.buffer.read()).schema
            print(len(s), s.field("f33").type, s.field("dict").type, s.field("f13").type)
            """, stdin: stream)
        #expect(status == 0, "\(errors)")
        #expect(output == "36 dense_union<c: int16 not null=5, s: string=10> dictionary<values=string, indices=uint16, ordered=1> timestamp[s, tz=Europe/Paris]\n")
    }
}
