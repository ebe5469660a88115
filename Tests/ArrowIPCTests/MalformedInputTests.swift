@testable import ArrowIPC
import Foundation
import Testing

/// Hostile and broken input: every file must be rejected with an ArrowIPCError, never a trap or a hang.
@Suite struct MalformedInputTests {
    static var fuzzCrashFiles: [URL] {
        let stream = TestSupport.arrowTesting.appendingPathComponent("arrow-ipc-stream")
        let file = TestSupport.arrowTesting.appendingPathComponent("arrow-ipc-file")
        return TestSupport.files(in: stream, suffixes: [""], prefix: "crash-")
            + TestSupport.files(in: stream, suffixes: [""], prefix: "clusterfuzz-")
            + TestSupport.files(in: file, suffixes: [""], prefix: "clusterfuzz-")
    }

    /// Reads the bytes as our CLI does: format detected, every batch read with full validation.
    static func readEverything(_ bytes: [UInt8]) throws(ArrowIPCError) -> Int {
        switch IPCFormat.detect(bytes) {
        case .stream:
            var reader = try IPCStreamReader(bytes, options: .untrusted)
            return try reader.readAll().count
        case .file:
            let reader = try IPCFileReader(bytes, options: .untrusted)
            return try reader.readAll().count
        }
    }

    static let validCompressedFuzzFile = "clusterfuzz-testcase-minimized-arrow-ipc-file-fuzz-6088759971217408"

    @Test func everyFuzzCrashFileIsRejected() throws {
        let files = Self.fuzzCrashFiles
        #expect(files.count >= 80, "found only \(files.count) crash/clusterfuzz files")
        var accepted: [String] = []
        for file in files {
            let bytes = try TestSupport.read(file)
            do {
                _ = try Self.readEverything(bytes)
                accepted.append(file.lastPathComponent)
            } catch {
                #expect(!error.description.isEmpty)
            }
            // Read as the other format too: both readers must cope with any bytes.
            if file.lastPathComponent == Self.validCompressedFuzzFile { continue }
            #expect(throws: ArrowIPCError.self) { _ = try IPCFileReader(bytes, options: .untrusted).readAll() }
        }
        // This file's body is LZ4-compressed and valid: pyarrow reads it with full validation too; it was
        // rejected only while compression was unsupported.
        #expect(accepted == [Self.validCompressedFuzzFile],
                "accepted malformed files: \(accepted)")
    }

    static let sample = TestSupport.fixtures.appendingPathComponent("generated/primitive.arrows")

    /// Offsets at which a stream may legally end: after the schema or any later whole message.
    static func messageBoundaries(_ bytes: [UInt8]) throws -> Set<Int> {
        var scanner = MessageScanner(bytes[...], limits: .default)
        var boundaries: Set<Int> = []
        while try scanner.next() != nil { boundaries.insert(scanner.position) }
        return boundaries
    }

    @Test func truncatedStreamsFailAtEveryOffsetButMessageBoundaries() throws {
        let bytes = try TestSupport.read(Self.sample)
        let boundaries = try Self.messageBoundaries(bytes)
        for cut in 0..<bytes.count {
            let prefix = Array(bytes[0..<cut])
            if boundaries.contains(cut) {
                #expect(throws: Never.self) { _ = try Self.readEverything(prefix) }
            } else {
                #expect(throws: ArrowIPCError.self, "truncation at \(cut) was accepted") { _ = try Self.readEverything(prefix) }
            }
        }
    }

    @Test func truncatedFilesFailAtEveryOffset() throws {
        let bytes = try TestSupport.read(TestSupport.fixtures.appendingPathComponent("generated/nested.arrow"))
        for cut in stride(from: 0, to: bytes.count, by: 1) {
            #expect(throws: ArrowIPCError.self, "file truncated at \(cut) was accepted") {
                _ = try IPCFileReader(Array(bytes[0..<cut]), options: .untrusted).readAll()
            }
        }
    }

    @Test(arguments: ["generated_nested", "generated_dictionary", "generated_nested_dictionary", "generated_map",
                      "generated_union", "generated_run_end_encoded", "generated_binary_view"])
    func flippedBytesNeverTrap(golden: String) throws {
        let bytes = try TestSupport.read(TestSupport.arrowTesting.appendingPathComponent(
            "arrow-ipc-stream/integration/cpp-21.0.0/\(golden).stream"))
        var rejected = 0
        for index in 0..<bytes.count {
            for mask: UInt8 in [0xFF, 0x80, 0x01] {
                var damaged = bytes
                damaged[index] ^= mask
                do { _ = try Self.readEverything(damaged) } catch { rejected += 1 }
            }
        }
        #expect(rejected > 0)
    }

    /// A stream with one schema message, built by hand around `flatbuffer`.
    static func frame(_ flatbuffer: [UInt8], body: [UInt8] = []) -> [UInt8] {
        var padded = flatbuffer
        while padded.count % 8 != 0 { padded.append(0) }
        var bytes: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        withUnsafeBytes(of: Int32(padded.count).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes + padded + body
    }

    @Test func hugeLengthsAreRejectedWithoutAllocating() throws {
        // Metadata length near Int32.max.
        #expect(throws: ArrowIPCError.limitExceeded(what: "message metadata size", limit: 256 << 20, found: 0x7FFF_FFF8)) {
            _ = try IPCStreamReader([0xFF, 0xFF, 0xFF, 0xFF, 0xF8, 0xFF, 0xFF, 0x7F])
        }
        let schema = Schema([Field("x", .int(.int64))])
        let schemaMessage = EncodedMessage.schema(schema).framedMetadata
        // A record batch whose body length is far beyond the bytes present.
        let huge = Message(header: .recordBatch(RecordBatchHeader(length: 1, nodes: [FieldNode(length: 1, nullCount: 0)],
                                                                  buffers: [BufferLocation(offset: 0, length: 0),
                                                                            BufferLocation(offset: 0, length: 8)])),
                           bodyLength: 1 << 40)
        var reader = try IPCStreamReader(schemaMessage + Self.frame(huge.encodeFlatbuffer()))
        #expect(throws: ArrowIPCError.limitExceeded(what: "message body length", limit: 34_359_738_352, found: 1 << 40)) { _ = try reader.next() }
        // A buffer offset past the body.
        let outside = Message(header: .recordBatch(RecordBatchHeader(length: 1, nodes: [FieldNode(length: 1, nullCount: 0)],
                                                                     buffers: [BufferLocation(offset: 0, length: 0),
                                                                               BufferLocation(offset: 1 << 50, length: 8)])),
                              bodyLength: 8)
        reader = try IPCStreamReader(schemaMessage + Self.frame(outside.encodeFlatbuffer(), body: [UInt8](repeating: 0, count: 8)))
        #expect(throws: ArrowIPCError.invalidMessage(
            what: "RecordBatch.buffers[1] of field 'x'",
            reason: "bytes 1125899906842624..<1125899906842632 outside the body of 8 bytes")) { _ = try reader.next() }
        // A node length that the values buffer cannot hold.
        let long = Message(header: .recordBatch(RecordBatchHeader(length: Int(Int32.max), nodes: [FieldNode(length: Int(Int32.max), nullCount: 0)],
                                                                  buffers: [BufferLocation(offset: 0, length: 0),
                                                                            BufferLocation(offset: 0, length: 8)])),
                           bodyLength: 8)
        reader = try IPCStreamReader(schemaMessage + Self.frame(long.encodeFlatbuffer(), body: [UInt8](repeating: 0, count: 8)))
        #expect(throws: ArrowIPCError.invalidData(field: "x", reason: "values buffer has 8 bytes, 17179869176 needed")) {
            _ = try reader.next()
        }
    }

    @Test func deepNestingIsLimited() throws {
        var type = DataType.int(.int32)
        for level in 0..<100 { type = .list(Field("l\(level)", type)) }
        let bytes = EncodedMessage.schema(Schema([Field("deep", type)])).framedMetadata
        #expect(throws: ArrowIPCError.limitExceeded(what: "field nesting depth", limit: 64, found: 65)) {
            _ = try IPCStreamReader(bytes)
        }
        var relaxed = IPCReadOptions()
        relaxed.limits.maxNestingDepth = 200
        #expect(throws: Never.self) { _ = try IPCStreamReader(bytes, options: relaxed) }
    }

    @Test func compressedBodiesNameTheirCodec() throws {
        // Compressed bodies are read now; a corrupted frame names its buffer and codec.
        let file = TestSupport.arrowTesting.appendingPathComponent("arrow-ipc-stream/integration/2.0.0-compression/generated_zstd.stream")
        var bytes = try TestSupport.read(file)
        var reader = try IPCStreamReader(bytes)
        #expect(try reader.next() != nil)
        // Zero the Zstandard magic of every frame (28 b5 2f fd) in the file.
        var index = 0
        while index + 4 <= bytes.count {
            if bytes[index..<(index + 4)] == [0x28, 0xB5, 0x2F, 0xFD] { bytes[index] = 0 }
            index += 1
        }
        var broken = try IPCStreamReader(bytes)
        #expect {
            _ = try broken.next()
        } throws: { error in
            guard case let ArrowIPCError.decompressionFailed(buffer, codec, _) = error else { return false }
            return buffer.hasPrefix("RecordBatch.buffers[") && codec == "ZSTD"
        }
    }

    @Test func bigEndianIsRejectedClearly() throws {
        let file = TestSupport.arrowTesting.appendingPathComponent("arrow-ipc-stream/integration/1.0.0-bigendian/generated_primitive.stream")
        #expect(throws: ArrowIPCError.unsupported(what: "big-endian IPC data (this reader handles little-endian only)")) {
            _ = try IPCStreamReader(try TestSupport.read(file))
        }
    }

    @Test func fullValidationCatchesBadOffsetsThatStructuralChecksLetThrough() throws {
        // utf8 column with offsets [0, 5, 2, 6]: first and last are fine, the middle decreases.
        var offsets: [UInt8] = []
        for value: Int32 in [0, 5, 2, 6] { withUnsafeBytes(of: value.littleEndian) { offsets.append(contentsOf: $0) } }
        let column = ArrayData(type: .utf8, length: 3, nullCount: 0,
                               buffers: [.empty, ArrowBuffer(offsets), ArrowBuffer(Array("abcdef".utf8))])
        let batch = try RecordBatch(schema: Schema([Field("s", .utf8)]), columns: [column])
        #expect(throws: ArrowIPCError.invalidData(field: "s", reason: "offset 2 is negative, decreasing or beyond the data (6)")) {
            try batch.validateFull()
        }
        #expect(throws: ArrowIPCError.invalidData(field: "column", reason: "offset 2 is negative, decreasing or beyond the data (6)")) { _ = try column.strings() }
        // The same bytes through the reader: structural reading passes, full validation rejects.
        let bytes = try TestSupport.write(batch.schema, [batch], format: .stream)
        var structural = try IPCStreamReader(bytes)
        #expect(throws: Never.self) { _ = try structural.next() }
        var full = try IPCStreamReader(bytes, options: .untrusted)
        #expect(throws: ArrowIPCError.invalidData(field: "s", reason: "offset 2 is negative, decreasing or beyond the data (6)")) { _ = try full.next() }
    }

    @Test func invalidUTF8AndDictionaryIndicesAreCaught() throws {
        let bad = ArrayData.binary([[0x61, 0xFF, 0x62]], type: .utf8)
        let batch = try RecordBatch(schema: Schema([Field("s", .utf8)]), columns: [bad])
        #expect(throws: ArrowIPCError.invalidData(field: "s", reason: "value 0 is not valid UTF-8")) { try batch.validateFull() }

        let dictionary = DictionaryValues(.utf8(["a", "b"]))
        let encoding = DictionaryEncoding(id: 0)
        let indices = ArrayData.dictionaryEncoded([0, 7], dictionary: dictionary, encoding: encoding)
        let encoded = try RecordBatch(schema: Schema([Field("d", .utf8, dictionary: encoding)]), columns: [indices])
        #expect(throws: ArrowIPCError.invalidData(
            field: "d", reason: "dictionary index 7 at slot 1 outside the dictionary of 2 values (width 4)")) { try encoded.validateFull() }
    }
}
