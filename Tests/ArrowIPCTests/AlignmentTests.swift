@testable import ArrowIPC
import Foundation
import Testing

/// Arrow requires 8-byte aligned buffers, and pyarrow refuses others ("did not start on 8-byte aligned
/// offset"): a reader that accepted them would let one client store what no reader can read.
@Suite struct AlignmentTests {
    static let schema = Schema([Field("x", .int(.int64))])

    /// An int64 column of 2 values whose values buffer starts at `offset` in a 24-byte body.
    static func batch(valuesAt offset: Int) -> (Message, [UInt8]) {
        let header = RecordBatchHeader(length: 2, nodes: [FieldNode(length: 2, nullCount: 0)],
                                       buffers: [BufferLocation(offset: 0, length: 0), BufferLocation(offset: offset, length: 16)])
        var body = [UInt8](repeating: 0, count: 24)
        body[offset] = 1
        body[offset + 8] = 2
        return (Message(header: .recordBatch(header), bodyLength: 24), body)
    }

    @Test(arguments: [1, 2, 4, 7])
    func misalignedBuffersAreRejectedNamingTheBuffer(offset: Int) throws {
        let bytes = OverflowTests.stream(Self.schema, [Self.batch(valuesAt: offset)])
        let expected = ArrowIPCError.invalidMessage(what: "RecordBatch.buffers[1] of field 'x'",
                                                    reason: "offset \(offset) is not a multiple of 8 (buffers must be 8-byte aligned)")
        #expect(throws: expected) { _ = try OverflowTests.readAll(bytes) }
        #expect(throws: expected) { var reader = try IPCStreamReader(bytes); _ = try reader.readAll() }
        // The Flight path (header and body apart) rejects it the same way.
        var decoder = IPCMessageDecoder()
        _ = try decoder.decode(header: EncodedMessage.schema(Self.schema).metadata[...], body: [])
        let (message, body) = Self.batch(valuesAt: offset)
        #expect(throws: expected) { _ = try decoder.decode(header: message.encodeFlatbuffer()[...], body: body[...]) }
    }

    @Test func alignedTwinIsAcceptedAndPyarrowAgrees() throws {
        let aligned = OverflowTests.stream(Self.schema, [Self.batch(valuesAt: 8)])
        var reader = try IPCStreamReader(aligned, options: .untrusted)
        let batch = try #require(try reader.next())
        #expect(Array(try batch.columns[0].values(as: Int64.self)) == [1, 2])
        // pyarrow reads the aligned stream and refuses the misaligned one, which is why we refuse it too.
        let code = """
            import sys, pyarrow as pa
            data = sys.stdin.buffer.read()
            try:
                print(pa.ipc.open_stream(data).read_all().column(0).to_pylist())
            except pa.ArrowInvalid as e:
                print("ArrowInvalid:", e)
            """
        let (status, out, err) = try TestSupport.runPythonCode(code, stdin: aligned)
        #expect(status == 0, "\(err)")
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "[1, 2]")
        let misaligned = OverflowTests.stream(Self.schema, [Self.batch(valuesAt: 4)])
        let (_, refused, _) = try TestSupport.runPythonCode(code, stdin: misaligned)
        #expect(refused.contains("did not start on 8-byte aligned offset"), "pyarrow said: \(refused)")
    }

    @Test func unpaddedMetadataAndBodiesAreRejected() throws {
        // A record batch whose flatbuffer is framed without padding: its body starts off the 8-byte grid.
        let (message, body) = Self.batch(valuesAt: 8)
        var flatbuffer = message.encodeFlatbuffer()
        if flatbuffer.count % 8 == 0 { flatbuffer += [0, 0, 0, 0] } else { while flatbuffer.count % 8 != 4 { flatbuffer.append(0) } }
        var bytes = EncodedMessage.schema(Self.schema).framedMetadata + [0xFF, 0xFF, 0xFF, 0xFF]
        let start = bytes.count - 4
        withUnsafeBytes(of: Int32(flatbuffer.count).littleEndian) { bytes.append(contentsOf: $0) }
        let bodyStart = bytes.count + flatbuffer.count
        bytes += flatbuffer + body + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
        #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch message at byte \(start)",
                                                      reason: "its body starts at byte \(bodyStart), not a multiple of 8 (unpadded metadata)")) {
            _ = try OverflowTests.readAll(bytes)
        }
        // Flight: a body length that is not a multiple of 8.
        var short = message
        short.bodyLength = 20
        var decoder = IPCMessageDecoder()
        _ = try decoder.decode(header: EncodedMessage.schema(Self.schema).metadata[...], body: [])
        #expect(throws: ArrowIPCError.invalidMessage(what: "RecordBatch message",
                                                      reason: "body length 20 is not a multiple of 8 (bodies are padded to 8 bytes)")) {
            _ = try decoder.decode(header: short.encodeFlatbuffer()[...], body: body[...])
        }
        // A longer (padded) body is still fine.
        #expect(throws: Never.self) { _ = try decoder.decode(header: message.encodeFlatbuffer()[...], body: (body + [UInt8](repeating: 0, count: 8))[...]) }
    }

    @Test func misalignedFileBlocksAreRejected() throws {
        let batch = try RecordBatch(schema: Self.schema, columns: [.primitive([Int64(1), 2])])
        let file = try TestSupport.write(Self.schema, [batch], format: .file)
        let good = try IPCFileReader(file).footer.recordBatches[0]
        let end = good.offset + good.metadataLength + good.bodyLength
        // The same message moved 4 bytes later (4 zero bytes before it), the footer pointing at it.
        let moved = Array(file[0..<good.offset]) + [0, 0, 0, 0] + Array(file[good.offset..<end]) + [0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
        let block = FileBlock(offset: good.offset + 4, metadataLength: good.metadataLength, bodyLength: good.bodyLength)
        let footer = FileFooter(schema: Self.schema, dictionaries: [], recordBatches: [block]).encodeFlatbuffer()
        var bytes = moved + footer
        withUnsafeBytes(of: Int32(footer.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes += Array("ARROW1".utf8)
        #expect(throws: ArrowIPCError.invalidMessage(what: "record batch block 0",
                                                      reason: "offset \(good.offset + 4) or body length \(good.bodyLength) is not a multiple of 8")) {
            _ = try IPCFileReader(bytes, options: .untrusted).readAll()
        }
    }

    /// Every golden of arrow-testing (all versions, streams and files) and every pyarrow fixture passes the
    /// alignment checks: only big-endian and compressed ones are refused, and for that reason.
    @Test func everyReferenceFileIsAligned() throws {
        let integration = TestSupport.arrowTesting.appendingPathComponent("arrow-ipc-stream/integration")
        let directories = (try FileManager.default.contentsOfDirectory(atPath: integration.path)).filter { !$0.hasSuffix(".md") }
        var files = TestSupport.files(in: TestSupport.fixtures.appendingPathComponent("generated"), suffixes: [".arrows", ".arrow"])
        for directory in directories {
            files += TestSupport.files(in: integration.appendingPathComponent(directory), suffixes: [".stream", ".arrow_file"])
        }
        #expect(files.count > 200)
        var refused: [String] = []
        for file in files {
            let bytes = try TestSupport.read(file)
            do {
                _ = try OverflowTests.readAll(bytes)
            } catch {
                if case .unsupported = error { continue }
                refused.append("\(file.lastPathComponent): \(error)")
            }
        }
        #expect(refused.isEmpty, "\(refused)")
    }
}
