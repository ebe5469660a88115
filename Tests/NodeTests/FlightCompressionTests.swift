import ArrowIPC
import FlightProto
import FlightRPC
import GRPCWire
import Node
import Testing

/// Compressed DoPut: validated by decompressing into scratch memory that counts against the memory limit,
/// stored byte for byte as received, returned by DoGet as stored.
@Suite struct FlightCompressionTests {
    /// `rows` rows of repeating ids and names: small when compressed, rows × ~20 bytes when not.
    static func stream(_ codec: CompressionCodec, rows: Int) throws -> [UInt8] {
        let schema = Schema([Field("id", .int(.int64), nullable: false), Field("name", .utf8)])
        let batch = try RecordBatch(schema: schema, columns: [
            .primitive((0..<rows).map { Int64($0 % 16) }),
            .utf8((0..<rows).map { $0 % 10 == 0 ? nil : "row \($0 % 16)" }),
        ])
        var writer = IPCWriter(schema: batch.schema, format: .stream, options: IPCWriteOptions(compression: codec))
        try writer.write(batch)
        writer.finish()
        return writer.bytes()
    }

    @Test(arguments: [CompressionCodec.lz4Frame, .zstd])
    func compressedPutIsStoredAsReceived(_ codec: CompressionCodec) async throws {
        let bytes = try Self.stream(codec, rows: 5000)
        try await FlightServiceTests.withStore { client, store in
            _ = try await client.put(FlightDescriptor(path: ["z", "1"]), ipc: bytes[...])
            #expect(store.usage.reservedBytes == 0)
            let reader = try await client.doGet(Ticket(Array("z/1".utf8)))
            var framed: [UInt8] = []
            while let data = try await reader.nextData() {
                framed += EncodedMessage.frame(header: data.dataHeader) + Array(data.dataBody)
            }
            #expect(framed + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0] == bytes)
            let batches = try await client.doGet(Ticket(Array("z/1".utf8))).readAll()
            #expect(batches.map(\.length) == [5000])
            #expect(try batches[0].columns[1].strings()[23] == "row 7")
        }
    }

    @Test func decompressionScratchCountsAgainstTheMemoryLimit() async throws {
        let bytes = try Self.stream(.zstd, rows: 20_000)
        // The compressed stream fits in 64 KiB; its ~330 KB of decompressed buffers do not.
        #expect(bytes.count < 60_000)
        try await FlightServiceTests.withStore(maxMemory: 64 << 10) { client, store in
            #expect(await FlightServiceTests.code {
                _ = try await client.put(FlightDescriptor(path: ["z", "big"]), ipc: bytes[...])
            } == .resourceExhausted)
            let key = try BatchKey(parsing: "z/big")
            #expect(store.get(key) == nil && store.usage.reservedBytes == 0)
        }
        try await FlightServiceTests.withStore(maxMemory: 1 << 20) { client, store in
            _ = try await client.put(FlightDescriptor(path: ["z", "big"]), ipc: bytes[...])
            #expect(store.get(try BatchKey(parsing: "z/big"))?.rows == 20_000)
            #expect(store.usage.reservedBytes == 0)
        }
    }

    @Test func corruptCompressedBodyIsInvalidArgument() async throws {
        var bytes = try Self.stream(.lz4Frame, rows: 1000)
        // Break every LZ4 frame magic (04 22 4d 18).
        var index = 0
        while index + 4 <= bytes.count {
            if bytes[index..<(index + 4)] == [0x04, 0x22, 0x4D, 0x18] { bytes[index] = 0 }
            index += 1
        }
        try await FlightServiceTests.withStore { client, store in
            #expect(await FlightServiceTests.code {
                _ = try await client.put(FlightDescriptor(path: ["z", "bad"]), ipc: bytes[...])
            } == .invalidArgument)
            #expect(store.list().isEmpty && store.usage.reservedBytes == 0)
        }
    }
}
