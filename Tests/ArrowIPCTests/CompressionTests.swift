import ArrowIPC
import Foundation
import Testing

/// Compressed IPC bodies (LZ4_FRAME, ZSTD): Apache Arrow's 2.0.0-compression goldens, pyarrow-written streams
/// of every type, our compressed output read by pyarrow, and malformed compressed buffers.
@Suite struct CompressionTests {
    static let goldenDirectory = TestSupport.arrowTesting.appendingPathComponent("arrow-ipc-stream/integration/2.0.0-compression")
    static let goldens = ["generated_lz4", "generated_zstd", "generated_uncompressible_lz4", "generated_uncompressible_zstd"]
    static let compressedFixtures = TestSupport.fixtures.appendingPathComponent("compressed")

    // MARK: Goldens

    /// Each golden's stream and file read (fully validated) equal to the integration JSON beside them.
    @Test(arguments: goldens, ["stream", "arrow_file"])
    func goldenReadsEqualToItsJSON(_ name: String, _ suffix: String) throws {
        let bytes = try TestSupport.read(Self.goldenDirectory.appendingPathComponent("\(name).\(suffix)"))
        let (schema, batches) = try TestSupport.readAll(bytes)
        let json = try Self.integrationJSON(Self.goldenDirectory.appendingPathComponent("\(name).json.gz"))
        let jsonBatches = try #require(json["batches"] as? [[String: Any]])
        try #require(batches.count == jsonBatches.count, "\(batches.count) batches, the JSON has \(jsonBatches.count)")
        var compared = 0
        for (batch, expected) in zip(batches, jsonBatches) {
            #expect(batch.length == expected["count"] as? Int)
            let columns = try #require(expected["columns"] as? [[String: Any]])
            for (index, column) in columns.enumerated() {
                let array = batch.columns[index]
                let validity = (column["VALIDITY"] as? [Int]) ?? []
                let data = (column["DATA"] as? [Any]) ?? []
                switch schema.fields[index].type {
                case .int(let type) where type.bitWidth == 64:
                    let values = try array.values(as: Int64.self)
                    for row in 0..<batch.length {
                        let expected: Int64? = validity[row] == 0 ? nil : Self.int64(data[row])
                        #expect(values[row] == expected, "\(name) column \(index) row \(row)")
                        compared += 1
                    }
                case .int(let type) where type.bitWidth == 32:
                    let values = try array.values(as: Int32.self)
                    for row in 0..<batch.length {
                        let expected: Int32? = validity[row] == 0 ? nil : Self.int64(data[row]).map { Int32($0) }
                        #expect(values[row] == expected, "\(name) column \(index) row \(row)")
                        compared += 1
                    }
                case .utf8:
                    let values = try array.strings()
                    for row in 0..<batch.length {
                        let expected: String? = validity[row] == 0 ? nil : data[row] as? String
                        #expect(values[row] == expected, "\(name) column \(index) row \(row)")
                        compared += 1
                    }
                default:
                    Issue.record("\(name): no JSON comparison for type \(schema.fields[index].type)")
                }
            }
        }
        #expect(compared > 0)
    }

    /// The goldens' values equal pyarrow's, and our re-encoding reads back equal in pyarrow.
    @Test func goldensMatchPyarrow() throws {
        let files = TestSupport.files(in: Self.goldenDirectory, suffixes: [".stream", ".arrow_file"], prefix: "generated_")
        #expect(files.count == 8)
        try ConformanceTests.check(files)
    }

    static func int64(_ value: Any) -> Int64? {
        if let text = value as? String { return Int64(text) }
        if let number = value as? NSNumber { return number.int64Value }
        return nil
    }

    static func integrationJSON(_ url: URL) throws -> [String: Any] {
        let (status, output, errors) = try TestSupport.runPythonCode(
            "import gzip, sys; sys.stdout.write(gzip.open(sys.argv[1]).read().decode())", [url.path])
        try #require(status == 0, "gunzip failed: \(errors)")
        return try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
    }

    // MARK: pyarrow-written streams

    /// Every case of Tests/Fixtures/ArrowIPC/generate.py (all types, dictionaries, deltas, views, slices, empty
    /// batches) plus incompressible, all-null and view-heavy batches, written by pyarrow with LZ4 and ZSTD.
    @Test func pyarrowCompressedStreamsMatchPyarrow() throws {
        let files = TestSupport.files(in: Self.compressedFixtures, suffixes: [".arrows", ".arrow"])
        #expect(files.count >= 50, "compressed fixtures not found (run Tests/Fixtures/ArrowIPC/compressed/generate.py)")
        try ConformanceTests.check(files)
    }

    // MARK: Our compressed output

    /// Our writer's LZ4 and ZSTD output of every pyarrow fixture reads back in pyarrow equal to the original,
    /// and in our reader as compressed batches.
    @Test(arguments: [CompressionCodec.lz4Frame, .zstd])
    func ourCompressedStreamsReadEqualInPyarrow(_ codec: CompressionCodec) throws {
        let files = TestSupport.files(in: TestSupport.fixtures.appendingPathComponent("generated"), suffixes: [".arrows"])
        #expect(files.count >= 15)
        let directory = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var jobs: [String] = []
        var names: [String] = []
        for (index, file) in files.enumerated() {
            let (schema, batches) = try TestSupport.readAll(try TestSupport.read(file))
            var writer = IPCWriter(schema: schema, format: .stream, options: IPCWriteOptions(compression: codec))
            for batch in batches { try writer.write(batch) }
            writer.finish()
            let bytes = writer.bytes()
            let (_, again) = try TestSupport.readAll(bytes)
            #expect(CanonicalDump.dump(again) == CanonicalDump.dump(batches), "\(file.lastPathComponent): our reader")
            let output = directory.appendingPathComponent("\(index).arrows")
            try Data(bytes).write(to: output)
            jobs.append("compare\t\(file.path)\t\(output.path)")
            names.append(file.lastPathComponent)
        }
        let jobFile = directory.appendingPathComponent("jobs.txt")
        try Data(jobs.joined(separator: "\n").utf8).write(to: jobFile)
        let (status, output, errors) = try TestSupport.runPython("conformance.py", [jobFile.path])
        try #require(status == 0, "conformance.py failed: \(errors)")
        let lines = output.split(separator: "\n").map(String.init)
        try #require(lines.count == names.count)
        for (name, line) in zip(names, lines) { #expect(line == "OK", "\(name) with \(codec): \(line)") }
    }

    /// A pyarrow check that our files name their codec: pyarrow reports the body compression it read.
    @Test func ourCompressedFileIsCompressedForPyarrow() throws {
        let schema = Schema([Field("id", .int(.int64)), Field("name", .utf8)])
        let ids = (0..<5000).map { Int64($0 % 100) }
        let names: [String?] = (0..<5000).map { $0 % 7 == 0 ? nil : "name-\($0 % 50)" }
        let batch = try RecordBatch(schema: schema, columns: [.primitive(ids), .utf8(names)])
        for codec in [CompressionCodec.lz4Frame, .zstd] {
            var writer = IPCWriter(schema: schema, format: .file, options: IPCWriteOptions(compression: codec, level: 3))
            try writer.write(batch)
            writer.finish()
            let bytes = writer.bytes()
            var plain = IPCWriter(schema: schema, format: .file)
            try plain.write(batch)
            plain.finish()
            #expect(bytes.count < plain.bytes().count / 2)
            let code = """
                import sys, pyarrow as pa
                t = pa.ipc.open_file(pa.py_buffer(sys.stdin.buffer.read())).read_all()
                assert t.column('id').to_pylist() == [i % 100 for i in range(5000)]
                assert t.column('name').to_pylist() == [None if i % 7 == 0 else 'name-%d' % (i % 50) for i in range(5000)]
                print('OK')
                """
            let (status, output, errors) = try TestSupport.runPythonCode(code, stdin: bytes)
            #expect(status == 0 && output.hasPrefix("OK"), "\(codec): \(errors)")
        }
    }

    /// A buffer that compression would not shrink is written raw with the −1 prefix; the batch reads back.
    @Test func incompressibleBuffersAreStoredRaw() throws {
        var g = UInt64(7)
        let values: [Int64] = (0..<1000).map { _ in
            g = g &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int64(bitPattern: g)
        }
        let schema = Schema([Field("r", .int(.int64), nullable: false)])
        let batch = try RecordBatch(schema: schema, columns: [.primitive(values)])
        for codec in [CompressionCodec.lz4Frame, .zstd] {
            let message = EncodedMessage.recordBatch(length: batch.length, columns: batch.columns,
                                                     options: IPCWriteOptions(compression: codec))
            let body = message.body.flatMap { $0 }
            // Buffer 0 (validity) is empty; buffer 1 starts at 0 with the −1 prefix and the raw values.
            #expect(Array(body[0..<8]) == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], "\(codec)")
            #expect(body.count == 8 + 8000)
            var decoder = IPCMessageDecoder()
            _ = try decoder.decode(header: EncodedMessage.schema(schema).metadata[...], body: [])
            guard case let .recordBatch(read) = try decoder.decode(header: message.metadata[...], body: body[...]) else {
                Issue.record("not a record batch")
                continue
            }
            #expect(try read.columns[0].values(as: Int64.self).map { $0 } == values)
        }
    }

    // MARK: Malformed compressed buffers

    static let schema = Schema([Field("v", .int(.int32), nullable: false)])

    /// Decodes a one-column int32 batch of `length` rows whose data buffer is `buffer` (prefix included).
    static func decode(length: Int, codec: CompressionCodec, buffer: [UInt8],
                       limits: IPCReadLimits = .default) throws(ArrowIPCError) -> RecordBatch? {
        let padded = buffer + [UInt8](repeating: 0, count: (8 - buffer.count % 8) % 8)
        let header = RecordBatchHeader(length: length, nodes: [FieldNode(length: length, nullCount: 0)],
                                       buffers: [BufferLocation(offset: 0, length: 0), BufferLocation(offset: 0, length: buffer.count)],
                                       compression: codec)
        let message = EncodedMessage(Message(header: .recordBatch(header), bodyLength: padded.count), body: [padded[...]])
        var decoder = IPCMessageDecoder(options: IPCReadOptions(limits: limits, validation: .full))
        _ = try decoder.decode(header: EncodedMessage.schema(Self.schema).metadata[...], body: [])
        if case let .recordBatch(batch) = try decoder.decode(header: message.metadata[...], body: padded[...]) { return batch }
        return nil
    }

    static func prefixed(_ declared: Int64, _ payload: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: declared.littleEndian) { Array($0) } + payload
    }

    /// The data buffer of a 1000-row int32 column (values 0..<10 repeating), compressed by our writer.
    static func compressedBuffer(_ codec: CompressionCodec) throws -> [UInt8] {
        let batch = try RecordBatch(schema: Self.schema, columns: [.primitive((0..<1000).map { Int32($0 % 10) })])
        let message = EncodedMessage.recordBatch(length: 1000, columns: batch.columns, options: IPCWriteOptions(compression: codec))
        let body = message.body.flatMap { $0 }
        guard case let .recordBatch(header) = try Message.decode(message.metadata[...]).header else { return [] }
        let location = header.buffers[1]
        return Array(body[location.offset..<(location.offset + location.length)])
    }

    @Test(arguments: [CompressionCodec.lz4Frame, .zstd])
    func validCompressedBufferDecodes(_ codec: CompressionCodec) throws {
        let buffer = try Self.compressedBuffer(codec)
        #expect(buffer.count < 4000)
        let batch = try #require(try Self.decode(length: 1000, codec: codec, buffer: buffer))
        #expect(try batch.columns[0].values(as: Int32.self).map { $0 } == (0..<1000).map { Int32($0 % 10) })
    }

    /// A declared length beyond the limit is refused before anything is allocated.
    @Test(arguments: [CompressionCodec.lz4Frame, .zstd])
    func decompressionBombIsRefused(_ codec: CompressionCodec) throws {
        let frame = Array(try Self.compressedBuffer(codec).dropFirst(8))
        #expect(throws: ArrowIPCError.limitExceeded(what: "decompressed size of RecordBatch.buffers[1] of field 'v' (\(codec))",
                                                    limit: 1 << 20, found: 1 << 40)) {
            _ = try Self.decode(length: 1000, codec: codec, buffer: Self.prefixed(1 << 40, frame),
                                limits: IPCReadLimits(maxDecompressedSize: 1 << 20))
        }
        // Within the limit but more than the frame can hold: refused without decoding.
        #expect(throws: ArrowIPCError.decompressionFailed(
            buffer: "RecordBatch.buffers[1] of field 'v'", codec: codec.description,
            reason: "\(frame.count) compressed bytes cannot hold the declared 1000000000 bytes")) {
            _ = try Self.decode(length: 1000, codec: codec, buffer: Self.prefixed(1_000_000_000, frame))
        }
        // A frame that decodes to more than declared stops at the declared length.
        #expect(throws: ArrowIPCError.self) {
            _ = try Self.decode(length: 1000, codec: codec, buffer: Self.prefixed(3000, frame))
        }
    }

    @Test(arguments: [CompressionCodec.lz4Frame, .zstd])
    func truncatedAndGarbageFramesNameTheBuffer(_ codec: CompressionCodec) throws {
        let buffer = try Self.compressedBuffer(codec)
        for cut in stride(from: 9, to: buffer.count, by: max(1, buffer.count / 40)) {
            do {
                _ = try Self.decode(length: 1000, codec: codec, buffer: Array(buffer[0..<cut]))
                Issue.record("\(codec): a frame cut at \(cut) of \(buffer.count) bytes was accepted")
            } catch let error {
                guard case let .decompressionFailed(name, codecName, _) = error else {
                    Issue.record("\(codec) cut at \(cut): \(error)")
                    continue
                }
                #expect(name == "RecordBatch.buffers[1] of field 'v'" && codecName == codec.description)
            }
        }
        let garbage = Self.prefixed(4000, (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) })
        #expect(throws: ArrowIPCError.self) { _ = try Self.decode(length: 1000, codec: codec, buffer: garbage) }
        #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch.buffers[1] of field 'v'",
                                                     reason: "compressed buffer of 5 bytes lacks its 8-byte uncompressed length")) {
            _ = try Self.decode(length: 1000, codec: codec, buffer: [1, 2, 3, 4, 5])
        }
    }

    /// Full validation checks the decompressed data: a utf8 column with decreasing offsets is rejected.
    @Test func fullValidationChecksDecompressedData() throws {
        var offsets: [UInt8] = []
        for value: Int32 in [0, 5, 2, 6] { withUnsafeBytes(of: value.littleEndian) { offsets.append(contentsOf: $0) } }
        let column = ArrayData(type: .utf8, length: 3, nullCount: 0,
                               buffers: [.empty, ArrowBuffer(offsets), ArrowBuffer(Array("abcdef".utf8))])
        let schema = Schema([Field("s", .utf8)])
        let batch = try RecordBatch(schema: schema, columns: [column])
        var writer = IPCWriter(schema: schema, format: .stream, options: IPCWriteOptions(compression: .zstd))
        try writer.write(batch)
        writer.finish()
        #expect(throws: ArrowIPCError.invalidData(field: "s", reason: "offset 2 is negative, decreasing or beyond the data (6)")) {
            _ = try TestSupport.readAll(writer.bytes(), options: .untrusted)
        }
    }

    /// The scratch size a Flight server reserves before decoding: the sum of declared lengths.
    @Test func decompressedSizeSumsTheDeclaredLengths() throws {
        let buffer = try Self.compressedBuffer(.zstd)
        let header = RecordBatchHeader(length: 1000, nodes: [FieldNode(length: 1000, nullCount: 0)],
                                       buffers: [BufferLocation(offset: 0, length: 0), BufferLocation(offset: 0, length: buffer.count)],
                                       compression: .zstd)
        let message = EncodedMessage(Message(header: .recordBatch(header), bodyLength: buffer.count), body: [buffer[...]])
        let decoder = IPCMessageDecoder()
        #expect(try decoder.decompressedSize(header: message.metadata[...], body: buffer[...]) == 4000)
        #expect(try decoder.decompressedSize(header: EncodedMessage.schema(Self.schema).metadata[...], body: []) == 0)
    }
}
