import ArrowIPC
import FlightProto
import GRPCWire
import FlightRPC
import Node
import Synchronization
import Testing

/// Our Flight server and client in one process: the framework (status mapping, auth, middleware) and the
/// store service's rules.
@Suite struct FlightServiceTests {
    static func batch(rows: Int = 1000) throws -> RecordBatch {
        let schema = Schema([Field("id", .int(.int64), nullable: false), Field("name", .utf8)])
        return try RecordBatch(schema: schema, columns: [
            .primitive((0..<rows).map { Int64($0) }),
            .utf8((0..<rows).map { $0 % 10 == 0 ? nil : "row \($0)" }),
        ])
    }

    static func stream(_ batches: [RecordBatch]) throws -> [UInt8] {
        var writer = IPCWriter(schema: batches[0].schema, format: .stream)
        for batch in batches { try writer.write(batch) }
        writer.finish()
        return writer.bytes()
    }

    /// Runs `body` with a store server and a connected client.
    static func withStore(maxMemory: Int = .max, auth: FlightBasicAuth? = nil,
                          middleware: [any FlightServerMiddleware] = [],
                          configure: (inout GRPCServerConfiguration) -> Void = { _ in },
                          _ body: (FlightClient, BatchStore) async throws -> Void) async throws {
        let store = BatchStore(maxMemory: maxMemory)
        let location = AdvertisedLocation()
        var configuration = GRPCServerConfiguration(host: "127.0.0.1", port: 0)
        configure(&configuration)
        let server = try FlightServer(service: FlightStoreService(store: store, location: location),
                                      configuration: configuration, auth: auth, middleware: middleware)
        location.set("grpc://127.0.0.1:\(server.port)")
        let client = try FlightClient(location: try FlightLocation(parsing: location.uri))
        do {
            try await body(client, store)
        } catch {
            client.close()
            await server.shutdown(gracePeriod: .seconds(1))
            throw error
        }
        client.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    static func code(_ body: () async throws -> Void) async -> GRPCStatus.Code? {
        do {
            try await body()
            return nil
        } catch let status as GRPCStatus {
            return status.code
        } catch {
            return .unknown
        }
    }

    @Test func putGetInfoAndListRoundTripByteForByte() async throws {
        let bytes = try Self.stream([try Self.batch(), try Self.batch(rows: 10)])
        try await Self.withStore { client, store in
            let results = try await client.put(FlightDescriptor(path: ["orders", "a1"]), ipc: bytes[...])
            #expect(String(decoding: results[0].value, as: UTF8.self) == "{\"key\":\"orders/a1\",\"rows\":1010,\"bytes\":\(store.get(try BatchKey(parsing: "orders/a1"))?.bytes ?? -1),\"status\":\"stored\"}")
            let info = try await client.getFlightInfo(FlightDescriptor(path: ["orders", "a1"]))
            #expect(info.totalRecords == 1010)
            #expect(info.endpoints.first?.locations.first?.uri == client.location.description)
            #expect(try FlightClient.decodeSchema(info.schema) == (try Self.batch()).schema)
            #expect(try await client.getSchema(FlightDescriptor(path: ["orders", "a1"])) == (try Self.batch()).schema)
            let ticket = try #require(info.endpoints.first?.ticket)
            // The stream re-framed from what DoGet sends equals what was put, byte for byte.
            let reader = try await client.doGet(ticket)
            var framed: [UInt8] = []
            while let data = try await reader.nextData() {
                framed += EncodedMessage.frame(header: data.dataHeader) + Array(data.dataBody)
            }
            #expect(framed + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0] == bytes)
            let batches = try await client.doGet(ticket).readAll()
            #expect(batches.map(\.length) == [1000, 10])
            #expect(try batches[0].columns[1].strings()[1] == "row 1")
            #expect(try await client.listFlights(criteria: Array("orders/".utf8)).count == 1)
            #expect(try await client.listFlights(criteria: Array("other/".utf8)).isEmpty)
            let poll = try await client.pollFlightInfo(FlightDescriptor(path: ["orders", "a1"]))
            #expect(poll.info?.totalRecords == 1010 && poll.progress == 1.0)
        }
    }

    @Test func queueOnlyDescriptorsGetAServerMadeID() async throws {
        let bytes = try Self.stream([try Self.batch(rows: 5)])
        try await Self.withStore { client, store in
            let first = try await client.put(FlightDescriptor(path: ["jobs"]), ipc: bytes[...])
            let second = try await client.put(FlightDescriptor(path: ["jobs"]), ipc: bytes[...])
            #expect(first != second)
            #expect(store.list(prefix: "jobs/").count == 2)
        }
    }

    @Test func errorsMapToFlightStatusCodes() async throws {
        let bytes = try Self.stream([try Self.batch(rows: 5)])
        try await Self.withStore(maxMemory: 4096) { client, store in
            _ = try await client.put(FlightDescriptor(path: ["q", "1"]), ipc: bytes[...])
            #expect(await Self.code { _ = try await client.put(FlightDescriptor(path: ["q", "1"]), ipc: bytes[...]) } == .alreadyExists)
            #expect(await Self.code { _ = try await client.getFlightInfo(FlightDescriptor(path: ["q", "2"])) } == .notFound)
            #expect(await Self.code { _ = try await client.doGet(Ticket(Array("q/2".utf8))).readAll() } == .notFound)
            #expect(await Self.code { _ = try await client.getFlightInfo(FlightDescriptor(cmd: [1, 2])) } == .invalidArgument)
            #expect(await Self.code { _ = try await client.getFlightInfo(FlightDescriptor(path: ["bad queue!", "1"])) } == .invalidArgument)
            #expect(await Self.code { _ = try await client.put(FlightDescriptor(cmd: [1]), ipc: bytes[...]) } == .invalidArgument)
            #expect(await Self.code { _ = try await client.doAction(FlightAction(type: "frobnicate")) } == .invalidArgument)
            #expect(await Self.code { _ = try await client.doAction(FlightAction(type: "delete", body: Array("q/9".utf8)[...])) } == .notFound)
            #expect(await Self.code {
                let (writer, reader) = client.doExchange(FlightDescriptor(path: ["q"]))
                try await writer.finishSending()
                _ = try await reader.readAll()
            } == .unimplemented)
            // Too big for the memory limit: RESOURCE_EXHAUSTED, nothing kept.
            let big = try Self.stream([try Self.batch(rows: 10_000)])
            #expect(await Self.code { _ = try await client.put(FlightDescriptor(path: ["q", "big"]), ipc: big[...]) } == .resourceExhausted)
            #expect(store.get(try BatchKey(parsing: "q/big")) == nil)
            #expect(store.usage.reservedBytes == 0)
        }
    }

    @Test func malformedIPCIsRejectedAndNothingIsStored() async throws {
        let schema = try Self.batch().schema
        try await Self.withStore { client, store in
            // A record batch whose int32 column does not fit the schema's int64.
            var writer = client.doPut(FlightDescriptor(path: ["q", "bad"]))
            try await writer.send(EncodedMessage.schema(schema))
            try await writer.send(EncodedMessage.recordBatch(length: 2, columns: [.primitive([Int32(1), 2]), .utf8(["x", "y"])]))
            #expect(await Self.code { _ = try await writer.finish() } == .invalidArgument)
            // A header that is not a flatbuffer at all.
            writer = client.doPut(FlightDescriptor(path: ["q", "bad"]))
            try await writer.send(EncodedMessage.schema(schema))
            try await writer.send(header: [UInt8](repeating: 0xEE, count: 24)[...], body: [], bodyLength: 0)
            #expect(await Self.code { _ = try await writer.finish() } == .invalidArgument)
            // Offsets that point past the string data: structural checks pass, full validation rejects.
            var offsets: [UInt8] = []
            for value: Int32 in [0, 9, 2] { withUnsafeBytes(of: value.littleEndian) { offsets.append(contentsOf: $0) } }
            let strings = ArrayData(type: .utf8, length: 2, nullCount: 0,
                                    buffers: [.empty, ArrowBuffer(offsets), ArrowBuffer(Array("abcdefghij".utf8))])
            writer = client.doPut(FlightDescriptor(path: ["q", "bad"]))
            try await writer.send(EncodedMessage.schema(schema))
            try await writer.send(EncodedMessage.recordBatch(length: 2, columns: [.primitive([Int64(1), 2]), strings]))
            #expect(await Self.code { _ = try await writer.finish() } == .invalidArgument)
            #expect(store.list().isEmpty && store.usage.reservedBytes == 0)
            // The key is still free: a good upload under it succeeds.
            _ = try await client.put(FlightDescriptor(path: ["q", "bad"]), ipc: try Self.stream([try Self.batch(rows: 3)])[...])
            #expect(store.get(try BatchKey(parsing: "q/bad"))?.rows == 3)
        }
    }

    @Test func basicAuthIssuesABearerTokenThatOtherCallsNeed() async throws {
        try await Self.withStore(auth: FlightBasicAuth(username: "alice", password: "s3cret")) { client, _ in
            #expect(await Self.code { _ = try await client.listFlights() } == .unauthenticated)
            #expect(await Self.code { try await client.authenticateBasic(username: "alice", password: "wrong") } == .unauthenticated)
            let token = try await client.authenticateBasic(username: "alice", password: "s3cret")
            #expect(token.count == 64)
            #expect(try await client.listFlights().isEmpty)
            // The same token works as the binary auth-token-bin header of the older C++ handshake.
            var headers = GRPCMetadata()
            headers.add("auth-token-bin", binary: Array(token.utf8))
            let other = try FlightClient(location: client.location, headers: headers)
            defer { other.close() }
            #expect(try await other.listActions().map(\.type) == ["health", "stats", "delete"])
        }
    }

    /// An anonymous peer cannot make an authenticating server buffer its requests: they are refused at their
    /// length prefix. (Before, a unary request was read whole — here up to the 1 MiB connection budget, refused as
    /// RESOURCE_EXHAUSTED — before its handler checked the token.)
    @Test func unauthenticatedRequestsAreRefusedBeforeAnyByteIsBuffered() async throws {
        try await Self.withStore(
            auth: FlightBasicAuth(username: "alice", password: "s3cret"),
            configure: { $0.connectionReceiveBudget = 1 << 20 }
        ) { client, _ in
            var big = FlightDescriptor()
            big.type = .cmd
            big.cmd = [UInt8](repeating: 7, count: 2 << 20)[...]
            do {
                _ = try await client.getFlightInfo(big)
                Issue.record("an unauthenticated 2 MiB GetFlightInfo was served")
            } catch let status as GRPCStatus {
                #expect(status.code == .unauthenticated, "\(status)")
                #expect(status.message.contains("GetFlightInfo needs 'authorization: Bearer"), "\(status)")
            }
            // A Handshake is small: a huge one is refused before it is read, by its announced size.
            do {
                _ = try await client.handshake([HandshakeMessage(payload: [UInt8](repeating: 1, count: 2 << 20)[...])])
                Issue.record("a 2 MiB Handshake was read")
            } catch let status as GRPCStatus {
                #expect(status.code == .invalidArgument, "\(status)")
                #expect(status.message.contains("a Handshake message is at most 65536 bytes"), "\(status)")
            }
            // The credentials still work, and then the same request reaches its handler (and the budget).
            _ = try await client.authenticateBasic(username: "alice", password: "s3cret")
            #expect(await Self.code { _ = try await client.getFlightInfo(big) } == .resourceExhausted)
            var small = FlightDescriptor(path: ["q", "none"])
            small.type = .path
            #expect(await Self.code { _ = try await client.getFlightInfo(small) } == .notFound)
        }
    }

    final class RecordingMiddleware: FlightServerMiddleware {
        let calls = Mutex<[String]>([])

        func callStarted(_ context: FlightCallContext) async throws -> GRPCMetadata {
            if context.metadata["x-block"] != nil { throw GRPCStatus(.permissionDenied, "blocked by policy") }
            var headers = GRPCMetadata()
            headers.add("x-served-by", "valkeyflight-test")
            return headers
        }

        func callEnded(_ context: FlightCallContext, status: GRPCStatus) async {
            self.calls.withLock { $0.append("\(context.method):\(status.code)") }
        }
    }

    @Test func middlewareSeesEveryCallAndCanReject() async throws {
        let middleware = RecordingMiddleware()
        try await Self.withStore(middleware: [middleware]) { client, _ in
            _ = try await client.doAction(FlightAction(type: "health"))
            _ = try? await client.getFlightInfo(FlightDescriptor(path: ["q", "none"]))
            var headers = GRPCMetadata()
            headers.add("x-block", "1")
            let blocked = try FlightClient(location: client.location, headers: headers)
            defer { blocked.close() }
            #expect(await Self.code { _ = try await blocked.listActions() } == .permissionDenied)
        }
        #expect(middleware.calls.withLock { $0 } == ["DoAction:OK", "GetFlightInfo:NOT_FOUND", "ListActions:PERMISSION_DENIED"])
    }
}
