import ArrowIPC
import FlightProto
import Foundation
import GRPCWire
import Glibc
import FlightRPC
import Node
import Synchronization
import TestProcessSupport
import Testing

/// Our `FlightClient` (and the client commands) against pyarrow's `FlightServerBase`: the reference server in
/// `Tests/Fixtures/Flight/reference_server.py`, which says what each RPC answers (issue 4, item 6).
@Suite(.referenceServer, .timeLimit(.minutes(2)))
struct FlightClientInteropTests {
    static let fixtures = CLI.packageRoot.appendingPathComponent("Tests/Fixtures/ArrowIPC/generated")

    /// Every `*.arrows` stream fixture.
    static let streamFixtures: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []
        return names.filter { $0.hasSuffix(".arrows") }.sorted()
    }()

    var server: ReferenceServer {
        get throws { try #require(ReferenceServer.shared, "the suite's reference server is not running") }
    }

    func connect() throws -> FlightClient {
        try FlightClient(location: FlightLocation(parsing: try self.server.url))
    }

    // MARK: Handshake, actions

    @Test func handshakeExchangesRawPayloads() async throws {
        let client = try self.connect()
        defer { client.close() }
        let responses = try await client.handshake([
            HandshakeMessage(payload: Array("abc".utf8)[...]), HandshakeMessage(payload: Array("flight".utf8)[...]),
        ])
        #expect(responses.map { String(decoding: $0.payload, as: UTF8.self) } == ["cba", "thgilf"])
        #expect(try await client.handshake([]).isEmpty)
    }

    @Test func listActionsDescribesEveryAction() async throws {
        let client = try self.connect()
        defer { client.close() }
        let actions = try await client.listActions()
        #expect(actions.map(\.type) == ["echo", "results", "digest", "dump-file", "sums", "delete", "fail", "whoami"])
        #expect(actions.allSatisfy { !$0.description.isEmpty })
    }

    @Test func doActionReturnsEveryResult() async throws {
        let client = try self.connect()
        defer { client.close() }
        #expect(try await Reference.action(client, "results", "4") == ["result-0", "result-1", "result-2", "result-3"])
        #expect(try await Reference.action(client, "results", "0") == [])
        let body = "héllo \u{0}binary"
        #expect(try await Reference.action(client, "echo", body) == [body])
    }

    /// pyarrow's mapping of handler exceptions to gRPC codes, as our client sees it.
    @Test(arguments: [
        ("not_found", GRPCStatus.Code.notFound), ("invalid", .invalidArgument), ("unimplemented", .unimplemented),
        ("unauthenticated", .unauthenticated), ("unauthorized", .permissionDenied), ("unavailable", .unavailable),
        ("timed_out", .deadlineExceeded), ("cancelled", .cancelled), ("internal", .internal),
        ("server_error", .unknown),
    ])
    func doActionErrorsKeepTheirCode(kind: String, code: GRPCStatus.Code) async throws {
        let client = try self.connect()
        defer { client.close() }
        let status = await Reference.status {
            _ = try await client.doAction(FlightAction(type: "fail", body: Array(kind.utf8)[...]))
        }
        #expect(status?.code == code)
        #expect(status?.message.contains("failing as asked: \(kind)") == true, "\(String(describing: status))")
    }

    @Test func unknownActionIsUnimplemented() async throws {
        let client = try self.connect()
        defer { client.close() }
        let status = await Reference.status { _ = try await client.doAction(FlightAction(type: "no-such-action")) }
        #expect(status?.code == .unimplemented)
        #expect(status?.message.contains("no-such-action") == true)
    }

    // MARK: Metadata RPCs and DoPut/DoGet of a batch built in Swift

    @Test func putOfABatchBuiltInSwiftIsWhatPyarrowStoresAndServes() async throws {
        let server = try self.server
        let client = try self.connect()
        defer { client.close() }
        let queue = Reference.uniqueName("built")
        let key = "\(queue)/b1"
        let (schema, batches) = try Reference.builtBatches()

        let writer = client.doPut(FlightDescriptor(path: [queue, "b1"]))
        try await writer.send(EncodedMessage.schema(schema))
        for (index, batch) in batches.enumerated() {
            try await writer.send(
                EncodedMessage.recordBatch(length: batch.length, columns: batch.columns),
                appMetadata: Array("meta-\(index)".utf8))
        }
        let results = try await writer.finish()
        #expect(results.count == 1)
        let putResult = try Reference.object(results.first?.value ?? [])
        #expect(putResult["key"] as? String == key)
        #expect(putResult["rows"] as? Int == 7)
        #expect(putResult["status"] as? String == "stored")

        // What pyarrow made of our schema, values and app_metadata.
        let digest = try await Reference.action(client, "digest", key)
        #expect(digest.count == 3)
        #expect(
            digest.first == """
                i64: int64
                i32: int32 not null
                f64: double
                flag: bool
                name: string
                blob: binary
                ts: timestamp[us, tz=UTC]
                -- schema metadata --
                origin: 'swift'
                """)
        // pyarrow's reader hands out the batches' app_metadata (the schema message carries none).
        #expect(digest.dropFirst(2).first == #"["meta-0", "meta-1"]"#)
        let dump = try Reference.object(Array((digest.dropFirst().first ?? "").utf8))
        let dumped = try #require(dump["batches"] as? [[String: Any]])
        #expect(dumped.map { $0["rows"] as? Int } == [4, 3])
        let firstColumns = try #require(dumped.first?["columns"] as? [Any])
        #expect(firstColumns.count == 7)
        #expect((firstColumns[0] as? [Any])?.map { $0 as? Int } == [1, nil, -3, Int(Int64.max)])
        #expect((firstColumns[4] as? [Any])?.map { $0 as? String } == ["616c706861", nil, "", "c3a9"])

        // GetFlightInfo, GetSchema, ListFlights.
        let info = try await client.getFlightInfo(FlightDescriptor(path: [queue, "b1"]))
        #expect(try FlightClient.decodeSchema(info.schema) == schema)
        #expect(info.flightDescriptor?.path == [queue, "b1"])
        #expect(info.totalRecords == 7)
        #expect(info.totalBytes > 0)
        #expect(info.ordered)
        #expect(try Reference.object(Array(info.appMetadata))["key"] as? String == key)
        #expect(info.endpoints.count == 1)
        #expect(info.endpoints.first?.ticket.map { Array($0.value) } == Array(key.utf8))
        #expect(info.endpoints.first?.locations.map(\.uri) == [server.url])
        #expect(try await client.getSchema(FlightDescriptor(path: [queue, "b1"])) == schema)
        let listed = try await client.listFlights(criteria: Array("\(queue)/".utf8))
        #expect(listed.map { $0.flightDescriptor?.path ?? [] } == [[queue, "b1"]])
        #expect(listed.first?.totalRecords == 7)
        let all = try await client.listFlights()
        #expect(all.contains { $0.flightDescriptor?.path == [queue, "b1"] })
        #expect(try await client.listFlights(criteria: Array("\(queue)-none/".utf8)).isEmpty)

        // DoGet returns the same values, batch by batch.
        let reader = try await client.doGet(Ticket(Array(key.utf8)))
        let received = try await reader.readAll()
        #expect(reader.schema == schema)
        #expect(received.map(\.length) == [4, 3])
        for (got, sent) in zip(received, batches) {
            #expect(
                Array(try got.columns[0].values(as: Int64.self)) == Array(try sent.columns[0].values(as: Int64.self)))
            #expect(
                Array(try got.columns[1].values(as: Int32.self)) == Array(try sent.columns[1].values(as: Int32.self)))
            #expect(
                Array(try got.columns[2].values(as: Double.self)).map { $0?.bitPattern }
                    == Array(try sent.columns[2].values(as: Double.self)).map { $0?.bitPattern })
            #expect(Array(try got.columns[3].bools()) == Array(try sent.columns[3].bools()))
            #expect(try got.columns[4].strings() == (try sent.columns[4].strings()))
            #expect(
                Array(try got.columns[5].binaries()).map { $0.map(Array.init) }
                    == Array(try sent.columns[5].binaries()).map { $0.map(Array.init) })
            #expect(
                Array(try got.columns[6].values(as: Int64.self)) == Array(try sent.columns[6].values(as: Int64.self)))
        }

        // The raw FlightData: a schema message first, then one message per batch.
        let raw = try await client.doGet(Ticket(Array(key.utf8)))
        var headers: [MessageHeader] = []
        while let data = try await raw.nextData() {
            var messages = try IPCMessageIterator(EncodedMessage.frame(header: data.dataHeader) + data.dataBody)
            if let message = try messages.next() { headers.append(message.message.header) }
        }
        #expect(headers.count == 3)
        if case .schema = headers.first {} else { Issue.record("DoGet did not start with a schema: \(headers)") }

        // Delete, then every RPC says NOT_FOUND.
        #expect(try await Reference.action(client, "delete", key).count == 1)
        #expect(
            await Reference.status { _ = try await client.getFlightInfo(FlightDescriptor(path: [queue, "b1"])) }?.code
                == .notFound)
        #expect(
            await Reference.status { _ = try await client.getSchema(FlightDescriptor(path: [queue, "b1"])) }?.code
                == .notFound)
        #expect(
            await Reference.status { _ = try await client.doGet(Ticket(Array(key.utf8))).readAll() }?.code == .notFound)
        #expect(try await client.listFlights(criteria: Array("\(queue)/".utf8)).isEmpty)
    }

    @Test func badRequestsGetPyarrowsCodes() async throws {
        let client = try self.connect()
        defer { client.close() }
        let status = await Reference.status {
            _ = try await client.getFlightInfo(FlightDescriptor(cmd: Array("SELECT 1".utf8)[...]))
        }
        #expect(status?.code == .invalidArgument)
        #expect(status?.message.contains("PATH descriptor") == true)
        #expect(
            await Reference.status { _ = try await client.getFlightInfo(FlightDescriptor(path: ["a", "b", "c"])) }?.code
                == .invalidArgument)
        #expect(
            await Reference.status { _ = try await client.doGet(Ticket(Array("nope/none".utf8))).readAll() }?.code
                == .notFound)
        let put = await Reference.status {
            _ = try await client.put(
                FlightDescriptor(path: ["a", "b", "c"]),
                ipc: try Reference.fixtureBytes("primitive.arrows")[...])
        }
        #expect(put?.code == .invalidArgument)
    }

    /// pyarrow 26's FlightServerBase has no poll_flight_info: Arrow C++ answers UNIMPLEMENTED.
    @Test func pollFlightInfoIsUnimplementedByPyarrow() async throws {
        let client = try self.connect()
        defer { client.close() }
        let status = await Reference.status { _ = try await client.pollFlightInfo(FlightDescriptor(path: ["q", "x"])) }
        #expect(status?.code == .unimplemented)
    }

    @Test func aKeyThatExistsIsRefused() async throws {
        let client = try self.connect()
        defer { client.close() }
        let queue = Reference.uniqueName("dup")
        let bytes = try Reference.fixtureBytes("primitive.arrows")
        _ = try await client.put(FlightDescriptor(path: [queue, "one"]), ipc: bytes[...])
        let status = await Reference.status {
            _ = try await client.put(FlightDescriptor(path: [queue, "one"]), ipc: bytes[...])
        }
        // pyarrow cannot send ALREADY_EXISTS; its FlightServerError arrives as UNKNOWN with our message.
        #expect(status?.code == .unknown)
        #expect(status?.message.contains("ALREADY_EXISTS") == true)
        // DoPut with only a queue: the server makes an ID.
        let results = try await client.put(FlightDescriptor(path: [queue]), ipc: bytes[...])
        let made = try #require(try Reference.object(results.first?.value ?? [])["key"] as? String)
        #expect(made.hasPrefix("\(queue)/") && made.count > queue.count + 1)
    }

    // MARK: Every IPC fixture through DoPut and DoGet

    /// DoPut of the fixture's messages as they are, DoGet back through our decoder (full validation), and a
    /// re-encoded DoPut of what we decoded: pyarrow's canonical dump of all three is the same.
    /// The parameterized test below has no case at all when the fixtures are missing: that must fail too.
    @Test func streamFixturesArePresent() {
        #expect(Self.streamFixtures.count >= 19, "only \(Self.streamFixtures.count) *.arrows under \(Self.fixtures.path)")
    }

    @Test(arguments: Self.streamFixtures)
    func fixtureRoundTripsThroughPyarrow(name: String) async throws {
        let client = try self.connect()
        defer { client.close() }
        let path = Self.fixtures.appendingPathComponent(name).path
        let bytes = try Reference.fixtureBytes(name)
        var local = try IPCStreamReader(bytes)
        let localBatches = try local.readAll()
        let queue = Reference.uniqueName(
            String(name.dropLast(".arrows".count)).replacingOccurrences(of: "_", with: "-"))

        let results = try await client.put(FlightDescriptor(path: [queue, "put"]), ipc: bytes[...])
        let putResult = try Reference.object(results.first?.value ?? [])
        #expect(putResult["rows"] as? Int == localBatches.reduce(0) { $0 + $1.length })
        let expected = try await Reference.action(client, "dump-file", path)
        let stored = try await Reference.action(client, "digest", "\(queue)/put")
        #expect(stored.first == expected.first, "schema as pyarrow stored it")
        #expect(stored.dropFirst().first == expected.dropFirst().first, "values as pyarrow stored them")

        let reader = try await client.doGet(Ticket(Array("\(queue)/put".utf8)))
        let received = try await reader.readAll()
        let schema = try #require(reader.schema)
        #expect(schema == local.schema)
        #expect(received.map(\.length) == localBatches.map(\.length))

        var writer = IPCWriter(schema: schema, format: .stream)
        for batch in received { try writer.write(batch) }
        writer.finish()
        _ = try await client.put(FlightDescriptor(path: [queue, "back"]), ipc: writer.bytes()[...])
        let back = try await Reference.action(client, "digest", "\(queue)/back")
        #expect(back.first == expected.first, "schema after our DoGet and DoPut")
        #expect(back.dropFirst().first == expected.dropFirst().first, "values after our DoGet and DoPut")
    }

    /// 24 MiB in two batches, and eight calls at once on one connection.
    @Test func bigBatchesAndConcurrentCallsOnOneConnection() async throws {
        let client = try self.connect()
        defer { client.close() }
        let queue = Reference.uniqueName("big")
        let schema = Schema([Field("n", .int(.int64), nullable: false), Field("m", .int(.int32))])
        let rows = 1 << 20
        // Built from raw little-endian bytes: element-wise builders are slow in debug builds.
        func column<T: FixedWidthInteger>(_: T.Type, from start: Int) -> ArrayData {
            let bytes = [UInt8](unsafeUninitializedCapacity: rows * MemoryLayout<T>.size) { buffer, count in
                let raw = UnsafeMutableRawBufferPointer(buffer)
                for index in 0..<rows {
                    raw.storeBytes(
                        of: T(truncatingIfNeeded: start + index).littleEndian,
                        toByteOffset: index * MemoryLayout<T>.size, as: T.self)
                }
                count = rows * MemoryLayout<T>.size
            }
            return ArrayData(
                type: .int(IntType(bitWidth: T.bitWidth, isSigned: true)), length: rows, nullCount: 0,
                buffers: [.empty, ArrowBuffer(bytes)])
        }
        let batches = try (0..<2).map { part in
            try RecordBatch(
                schema: schema, columns: [column(Int64.self, from: part * rows), column(Int32.self, from: part * rows)])
        }
        let expectedN = (2 * rows) * (2 * rows - 1) / 2
        var writer = IPCWriter(schema: schema, format: .stream)
        for batch in batches { try writer.write(batch) }
        writer.finish()
        let stream = writer.bytes()

        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<8 {
                group.addTask {
                    let key = "\(queue)/c\(index)"
                    if index < 2 {
                        _ = try await client.put(FlightDescriptor(path: [queue, "c\(index)"]), ipc: stream[...])
                        let stats = try Reference.object(
                            Array(try await Reference.action(client, "sums", key).joined().utf8))
                        #expect(stats["rows"] as? Int == 2 * rows)
                        #expect(stats["batches"] as? Int == 2)
                        #expect(stats["sums"] as? [String: Int] == ["n": expectedN, "m": expectedN])
                        let received = try await client.doGet(Ticket(Array(key.utf8))).readAll()
                        #expect(received.map(\.length) == [rows, rows])
                        for (got, sent) in zip(received, batches) {
                            for (a, b) in zip(got.columns, sent.columns) {
                                let same = a.buffers[1].bytes.withUnsafeBytes { x in
                                    b.buffers[1].bytes.withUnsafeBytes { y in
                                        guard let p = x.baseAddress, let q = y.baseAddress else {
                                            return x.count == y.count
                                        }
                                        return x.count == y.count && memcmp(p, q, x.count) == 0
                                    }
                                }
                                #expect(same, "column values differ after DoGet")
                            }
                        }
                    } else {
                        let results = try await Reference.action(client, "results", String(index))
                        #expect(results.count == index)
                        #expect(try await client.listActions().count == 8)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    // MARK: DoExchange

    /// A real bidirectional exchange: each batch's echo is read before the next batch is sent.
    @Test func doExchangeStreamsBothWays() async throws {
        let client = try self.connect()
        defer { client.close() }
        let (schema, batches) = try Reference.builtBatches()
        try await Reference.withDeadline(20, "DoExchange") {
            let (writer, reader) = client.doExchange(FlightDescriptor(cmd: Array("times-ten".utf8)[...]))
            var decoder = IPCMessageDecoder(options: .untrusted)
            try await writer.send(EncodedMessage.schema(schema))
            for (index, batch) in batches.enumerated() {
                try await writer.send(
                    EncodedMessage.recordBatch(length: batch.length, columns: batch.columns),
                    appMetadata: Array("m\(index)".utf8))
                var echoed: RecordBatch?
                var metadata: [UInt8] = []
                while echoed == nil, let data = try await reader.nextData() {
                    guard !data.dataHeader.isEmpty else { continue }
                    if case .recordBatch(let batch) = try decoder.decode(header: data.dataHeader, body: data.dataBody) {
                        echoed = batch
                        metadata = Array(data.appMetadata)
                    }
                }
                let echo = try #require(echoed, "no echo for batch \(index)")
                #expect(decoder.schema == schema)
                #expect(String(decoding: metadata, as: UTF8.self) == "echo:m\(index)")
                #expect(
                    Array(try echo.columns[0].values(as: Int64.self))
                        == Array(try batch.columns[0].values(as: Int64.self)).map {
                            $0.map { $0 &* 10 }
                        })
                #expect(
                    Array(try echo.columns[1].values(as: Int32.self))
                        == Array(try batch.columns[1].values(as: Int32.self)).map {
                            $0.map { $0 &* 10 }
                        })
                #expect(try echo.columns[4].strings() == (try batch.columns[4].strings()))
            }
            // A metadata-only FlightData (no IPC message) is answered with one.
            try await writer.send(header: [], body: [], bodyLength: 0, appMetadata: Array("ping".utf8))
            let pong = try await reader.nextData()
            #expect(pong?.dataHeader.isEmpty == true && pong?.dataBody.isEmpty == true)
            #expect(pong.map { String(decoding: $0.appMetadata, as: UTF8.self) } == "echo:ping")
            try await writer.finishSending()
            #expect(try await reader.nextData() == nil)
        }
    }

    /// Flight servers learn the descriptor from the first FlightData, so even a stream without messages must
    /// send one (pyarrow's client sends a descriptor-only FlightData).
    @Test func doExchangeWithoutBatchesStillSendsTheDescriptor() async throws {
        let client = try self.connect()
        defer { client.close() }
        try await Reference.withDeadline(20, "DoExchange") {
            let (writer, reader) = client.doExchange(FlightDescriptor(path: ["exchange", "empty"]))
            try await writer.finishSending()
            let data = try await reader.nextData()
            #expect(data.map { String(decoding: $0.appMetadata, as: UTF8.self) } == "no data for path exchange/empty")
            #expect(data?.dataHeader.isEmpty == true)
            #expect(try await reader.nextData() == nil)
        }
    }

    // MARK: Client commands

    @Test func submitListAndGetWithTheCLI() async throws {
        let server = try self.server
        let queue = Reference.uniqueName("cli")
        let input = Self.fixtures.appendingPathComponent("nested.arrows").path
        let base = ["--server", server.url]

        let submitted = try await CLI.run(["submit", input, "--queue", queue, "--id", "n1"] + base)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        #expect(submitted.text.hasPrefix("\(queue)/n1  rows="), "\(submitted.text)")
        #expect(submitted.text.contains("status=stored"))

        let json = try await CLI.run(
            ["submit", Self.fixtures.appendingPathComponent("primitive.arrow").path, "--queue", queue, "--json"] + base)
        #expect(json.status == 0, "\(json.stderr)")
        let object = try Reference.object(Array(json.stdout))
        let madeKey = try #require(object["key"] as? String)
        #expect(madeKey.hasPrefix("\(queue)/"))
        #expect((object["rows"] as? Int ?? 0) > 0)
        #expect(object["status"] as? String == "stored")

        let list = try await CLI.run(["list", "--queue", queue] + base)
        #expect(list.status == 0, "\(list.stderr)")
        let lines = list.text.split(separator: "\n")
        #expect(lines.first?.hasPrefix("KEY") == true)
        #expect(
            Set(lines.dropFirst().compactMap { $0.split(separator: " ").first.map(String.init) }) == [
                "\(queue)/n1", madeKey,
            ])
        let listJSON = try await CLI.run(["list", "--queue", queue, "--json"] + base)
        #expect(listJSON.status == 0, "\(listJSON.stderr)")
        let rows = try listJSON.text.split(separator: "\n").map { try Reference.object(Array($0.utf8)) }
        #expect(Set(rows.compactMap { $0["key"] as? String }) == ["\(queue)/n1", madeKey])
        #expect(rows.allSatisfy { $0["location"] as? String == server.url })
        let none = try await CLI.run(["list", "--queue", "\(queue)-empty"] + base)
        #expect(none.status == 0 && none.text == "no batches\n", "\(none.text) \(none.stderr)")

        let output = FileManager.default.temporaryDirectory.appendingPathComponent("vf-get-\(UUID().uuidString).arrows")
            .path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let got = try await CLI.run(["get", "\(queue)/n1", "-o", output] + base)
        #expect(got.status == 0, "\(got.stderr)")
        let client = try self.connect()
        defer { client.close() }
        // pyarrow reads the file we wrote, and finds what was put.
        #expect(
            try await Reference.action(client, "dump-file", output)
                == (try await Reference.action(client, "dump-file", input)))
    }

    @Test(arguments: [
        (["get", "no-slash"], "no-slash"),
        (["get", "cli-missing/none"], "cli-missing/none"),
        (["submit", "/nonexistent/in.arrows", "--queue", "q"], "/nonexistent/in.arrows"),
        (["list", "--queue", "bad queue"], "bad queue"),
    ])
    func badInputGivesOneLineAndNonZeroExit(arguments: [String], mentions: String) async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("vf-bad-\(UUID().uuidString).arrows")
            .path
        defer { try? FileManager.default.removeItem(atPath: output) }
        var command = arguments + ["--server", try self.server.url]
        if arguments.first == "get" { command += ["-o", output] }
        let result = try await CLI.run(command)
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("valkeyflight: error: "), "\(result.stderr)")
        #expect(result.stderr.filter { $0 == "\n" }.count == 1, "not one line: \(result.stderr)")
        #expect(result.stderr.contains(mentions), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output), "a failed get left \(output)")
    }

    @Test func submittingAnExistingKeyFailsWithOneLine() async throws {
        let server = try self.server
        let queue = Reference.uniqueName("cli-dup")
        let input = Self.fixtures.appendingPathComponent("primitive.arrows").path
        let first = try await CLI.run(["submit", input, "--queue", queue, "--id", "x", "--server", server.url])
        #expect(first.status == 0, "\(first.stderr)")
        let second = try await CLI.run(["submit", input, "--queue", queue, "--id", "x", "--server", server.url])
        #expect(second.status != 0)
        #expect(second.stderr.hasPrefix("valkeyflight: error: "), "\(second.stderr)")
        #expect(second.stderr.filter { $0 == "\n" }.count == 1, "not one line: \(second.stderr)")
        #expect(second.stderr.contains("ALREADY_EXISTS"), "\(second.stderr)")
    }
}

// MARK: - Auth, TLS, unreachable servers (each with a server of its own)

@Suite(.timeLimit(.minutes(2)))
struct FlightClientInteropTestsSecurity {
    /// pyarrow's header authentication (Basic on the Handshake → Bearer), as `authenticate_basic_token` uses it.
    @Test func authenticateBasicAgainstPyarrowHeaderAuth() async throws {
        try await ReferenceServer.with(["--auth", "alice:s3cret:with:colons"]) { server in
            let location = try FlightLocation(parsing: server.url)
            let anonymous = try FlightClient(location: location)
            defer { anonymous.close() }
            #expect(await Reference.status { _ = try await anonymous.listFlights() }?.code == .unauthenticated)
            #expect(
                await Reference.status { _ = try await anonymous.doAction(FlightAction(type: "echo")) }?.code
                    == .unauthenticated)

            let wrong = try FlightClient(location: location)
            defer { wrong.close() }
            #expect(
                await Reference.status { try await wrong.authenticateBasic(username: "alice", password: "s3cret") }?
                    .code
                    == .unauthenticated)
            #expect(
                await Reference.status {
                    try await wrong.authenticateBasic(username: "bob", password: "s3cret:with:colons")
                }?.code
                    == .unauthenticated)
            #expect(await Reference.status { _ = try await wrong.listFlights() }?.code == .unauthenticated)

            var forged = GRPCMetadata()
            forged.add("authorization", "Bearer not-the-token")
            let forger = try FlightClient(location: location, headers: forged)
            defer { forger.close() }
            #expect(await Reference.status { _ = try await forger.listActions() }?.code == .unauthenticated)

            let client = try FlightClient(location: location)
            defer { client.close() }
            let token = try await client.authenticateBasic(username: "alice", password: "s3cret:with:colons")
            #expect(!token.isEmpty)
            // The server sees the bearer token it issued on every later call.
            #expect(try await Reference.action(client, "whoami", "") == [token])
            let bytes = try Reference.fixtureBytes("dictionary.arrows")
            _ = try await client.put(FlightDescriptor(path: ["auth", "d"]), ipc: bytes[...])
            #expect(try await client.listFlights().map { $0.flightDescriptor?.path ?? [] } == [["auth", "d"]])
            let batches = try await client.doGet(Ticket(Array("auth/d".utf8))).readAll()
            var local = try IPCStreamReader(bytes)
            #expect(batches.map(\.length) == (try local.readAll().map(\.length)))

            // The CLI's --auth-basic, and without it a one-line error.
            let listed = try await CLI.run([
                "list", "--server", server.url, "--auth-basic", "alice:s3cret:with:colons", "--json",
            ])
            #expect(listed.status == 0, "\(listed.stderr)")
            #expect(listed.text.contains("\"key\":\"auth/d\""))
            let refused = try await CLI.run(["list", "--server", server.url])
            #expect(refused.status != 0)
            #expect(
                refused.stderr.hasPrefix("valkeyflight: error: ") && refused.stderr.filter { $0 == "\n" }.count == 1,
                "\(refused.stderr)")
            let badPassword = try await CLI.run(["list", "--server", server.url, "--auth-basic", "alice:nope"])
            #expect(badPassword.status != 0)
            #expect(badPassword.stderr.filter { $0 == "\n" }.count == 1, "\(badPassword.stderr)")
        }
    }

    @Test func tlsWithACertificateFromOpenSSL() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vf-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (cert, key) = try await Reference.selfSignedCertificate(in: directory, name: "server")
        let (otherCert, _) = try await Reference.selfSignedCertificate(in: directory, name: "other")
        try await ReferenceServer.with(["--tls", cert, key]) { server in
            #expect(server.url.hasPrefix("grpc+tls://127.0.0.1:"))
            let location = try FlightLocation(parsing: server.url)
            #expect(location.tls)
            // Without trust roots the system trust store is used, which does not know this self-signed certificate…
            let untrusted = try FlightClient(location: location)
            await #expect {
                _ = try await untrusted.listActions()
            } throws: { error in
                "\(error)".contains("certificate verify failed")
            }
            untrusted.close()
            // …but it is the system store: OpenSSL's SSL_CERT_FILE points it at the certificate (no --tls-ca).
            let system = try await CLI.run(["list", "--server", server.url], environment: ["SSL_CERT_FILE": cert])
            #expect(system.status == 0, "\(system.stderr)")

            let client = try FlightClient(location: location, trustRoots: cert, serverName: "localhost")
            defer { client.close() }
            let echoed = try await client.handshake([HandshakeMessage(payload: Array("tls".utf8)[...])])
            #expect(echoed.map { String(decoding: $0.payload, as: UTF8.self) } == ["slt"])
            let bytes = try Reference.fixtureBytes("binary.arrows")
            _ = try await client.put(FlightDescriptor(path: ["tls", "b"]), ipc: bytes[...])
            let info = try await client.getFlightInfo(FlightDescriptor(path: ["tls", "b"]))
            #expect(info.endpoints.first?.locations.map(\.uri) == [server.url])
            var local = try IPCStreamReader(bytes)
            #expect(
                try await client.doGet(Ticket(Array("tls/b".utf8))).readAll().map(\.length)
                    == (try local.readAll().map(\.length)))
            #expect(try await client.listActions().count == 8)

            // The IP address is in the certificate too, so no server name is needed.
            let byAddress = try FlightClient(location: location, trustRoots: cert)
            defer { byAddress.close() }
            #expect(try await client.listFlights().count == 1)
            #expect(try await byAddress.listFlights().count == 1)

            // A CA that did not sign the server's certificate: the call fails, promptly (a call that hung instead
            // would fail the test with withDeadline's Timeout, not UNAVAILABLE).
            let untrusting = try FlightClient(location: location, trustRoots: otherCert, serverName: "localhost")
            defer { untrusting.close() }
            let status = await Reference.status {
                try await Reference.withDeadline(15, "TLS with the wrong CA") { _ = try await untrusting.listFlights() }
            }
            #expect(status?.code == .unavailable, "\(String(describing: status))")

            let listed = try await CLI.run(["list", "--server", server.url, "--tls-ca", cert, "--json"])
            #expect(listed.status == 0, "\(listed.stderr)")
            #expect(listed.text.contains("\"key\":\"tls/b\""))
            let refused = try await CLI.run(["list", "--server", server.url, "--tls-ca", otherCert])
            #expect(refused.status != 0)
            #expect(refused.stderr.filter { $0 == "\n" }.count == 1, "\(refused.stderr)")
        }
    }

    /// Nothing listens: every RPC fails UNAVAILABLE at once instead of hanging.
    @Test func unreachableServerFailsUnavailablePromptly() async throws {
        try await Reference.withClosedPort { port in
            let client = try FlightClient(location: FlightLocation(parsing: "grpc://127.0.0.1:\(port)"))
            defer { client.close() }
            let calls: [(String, @Sendable () async throws -> Void)] = [
                ("GetFlightInfo", { _ = try await client.getFlightInfo(FlightDescriptor(path: ["q", "i"])) }),
                ("ListFlights", { _ = try await client.listFlights() }),
                ("DoGet", { _ = try await client.doGet(Ticket(Array("q/i".utf8))).readAll() }),
                (
                    "DoPut",
                    {
                        _ = try await client.put(
                            FlightDescriptor(path: ["q", "i"]), ipc: try Reference.fixtureBytes("null.arrows")[...])
                    }
                ),
                ("Handshake", { try await client.authenticateBasic(username: "u", password: "p") }),
            ]
            // Promptly: each call must fail UNAVAILABLE on its own (connection refused), long before its 10 s deadline
            // (a call that waited for it fails the test with a Timeout instead). No bound on the total: on a loaded
            // machine five prompt failures can still add up to seconds.
            for (name, call) in calls {
                let status = await Reference.status { try await Reference.withDeadline(10, name) { try await call() } }
                #expect(status?.code == .unavailable, "\(name): \(String(describing: status))")
            }

            let cli = try await CLI.run(["list", "--server", "grpc://127.0.0.1:\(port)"])
            #expect(cli.status != 0)
            #expect(
                cli.stderr.hasPrefix("valkeyflight: error: ") && cli.stderr.filter { $0 == "\n" }.count == 1,
                "\(cli.stderr)")
        }
    }

    /// A server that goes away between calls: the next call fails UNAVAILABLE.
    @Test func serverStoppedBetweenCalls() async throws {
        let server = try await ReferenceServer.start()
        let client = try FlightClient(location: FlightLocation(parsing: server.url))
        defer { client.close() }
        #expect(try await client.listActions().count == 8)
        await server.stop()
        let status = await Reference.status {
            try await Reference.withDeadline(10, "after stop") { _ = try await client.listActions() }
        }
        #expect(status?.code == .unavailable, "\(String(describing: status))")
    }
}

// MARK: - Helpers

/// Resumes a continuation once, whoever comes first.
private final class ResumeOnce<T: Sendable>: Sendable {
    let continuation: Mutex<CheckedContinuation<T, any Error>?>

    init(_ continuation: CheckedContinuation<T, any Error>) { self.continuation = Mutex(continuation) }

    func resume(_ result: Result<T, any Error>) -> Bool {
        guard let continuation = self.continuation.withLock({ $0.take() }) else { return false }
        continuation.resume(with: result)
        return true
    }
}

enum Reference {
    struct Timeout: Error, CustomStringConvertible {
        let description: String
    }

    /// A queue name no other test uses.
    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    static func fixtureBytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: FlightClientInteropTests.fixtures.appendingPathComponent(name)))
    }

    /// A JSON object from bytes.
    static func object(_ bytes: some Collection<UInt8>) throws -> [String: Any] {
        try #require(
            try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            "not a JSON object: \(String(decoding: bytes, as: UTF8.self))")
    }

    /// The results of a DoAction, as text.
    static func action(_ client: FlightClient, _ type: String, _ body: String) async throws -> [String] {
        try await client.doAction(FlightAction(type: type, body: Array(body.utf8)[...])).map {
            String(decoding: $0.value, as: UTF8.self)
        }
    }

    /// The GRPCStatus `body` throws (nil, and an issue recorded, if it succeeds or throws something else).
    static func status(sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async
        -> GRPCStatus?
    {
        do {
            try await body()
            Issue.record("expected a GRPCStatus, the call succeeded", sourceLocation: sourceLocation)
        } catch let status as GRPCStatus {
            return status
        } catch {
            Issue.record("expected a GRPCStatus, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    /// Runs `body`, failing with ``Timeout`` after `seconds` even if `body` never returns.
    static func withDeadline<T: Sendable>(
        _ seconds: Int, _ what: String,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        return try await withCheckedThrowingContinuation { continuation in
            let once = ResumeOnce(continuation)
            let work = Task {
                do { _ = once.resume(.success(try await body())) } catch { _ = once.resume(.failure(error)) }
            }
            Task {
                try? await Task.sleep(for: .seconds(seconds))
                if once.resume(.failure(Timeout(description: "\(what) did not finish within \(seconds) s"))) {
                    work.cancel()
                }
            }
        }
    }

    /// Two batches (4 and 3 rows) of seven types, with nulls and schema metadata.
    static func builtBatches() throws -> (Schema, [RecordBatch]) {
        let schema = Schema(
            [
                Field("i64", .int(.int64)), Field("i32", .int(.int32), nullable: false),
                Field("f64", .floatingPoint(.double)),
                Field("flag", .bool), Field("name", .utf8), Field("blob", .binary),
                Field("ts", .timestamp(.microsecond, timezone: "UTC")),
            ], metadata: [KeyValue("origin", "swift")])
        let first = try RecordBatch(
            schema: schema,
            columns: [
                .primitive([1, nil, -3, Int64.max] as [Int64?]),
                .primitive([10, 20, 30, Int32.min] as [Int32?]),
                .primitive([1.5, -0.0, nil, .infinity] as [Double?]),
                .bool([true, false, nil, true]),
                .utf8(["alpha", nil, "", "é"]),
                .binary([[0, 1, 2], [], nil, [255]]),
                .primitive(
                    [1_700_000_000_000_000, nil, 0, -1] as [Int64?], type: .timestamp(.microsecond, timezone: "UTC")),
            ])
        let second = try RecordBatch(
            schema: schema,
            columns: [
                .primitive([7, 8, 9] as [Int64?]),
                .primitive([-1, 0, 1] as [Int32?]),
                .primitive([.nan, 2.25, -1e300] as [Double?]),
                .bool([nil, nil, false]),
                .utf8(["a longer string than twelve bytes", "x", nil]),
                .binary([nil, Array(repeating: 7, count: 40), [0]]),
                .primitive([nil, nil, 86_400_000_000] as [Int64?], type: .timestamp(.microsecond, timezone: "UTC")),
            ])
        return (schema, [first, second])
    }

    /// Runs `body` with a loopback port nothing listens on: a socket bound to it, never listening, is held for
    /// the whole scope, so connections are refused and no other process can take the port meanwhile.
    static func withClosedPort<T>(_ body: (Int) async throws -> T) async throws -> T {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Timeout(description: "socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(fd, address, length) == 0 && getsockname(fd, address, &length) == 0
            }
        }
        guard bound else { throw Timeout(description: "bind failed") }
        return try await body(Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A self-signed certificate for localhost and 127.0.0.1 made with `openssl req` (waited for off the
    /// cooperative pool); returns (cert, key) paths.
    static func selfSignedCertificate(in directory: URL, name: String) async throws -> (String, String) {
        try await offPool { try self.selfSignedCertificateBlocking(in: directory, name: name) }
    }

    private static func selfSignedCertificateBlocking(in directory: URL, name: String) throws -> (String, String) {
        let cert = directory.appendingPathComponent("\(name).pem").path
        let key = directory.appendingPathComponent("\(name)-key.pem").path
        let result = try SpawnedProcess.runBlocking(ChildCommand("/usr/bin/env", [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ], stdin: .discard, stdout: .discard, stderr: .pipe), timeout: .seconds(60))
        guard result.status == 0 else {
            throw Timeout(description: "openssl req failed (\(result.status)): \(result.stderrText.suffix(600))")
        }
        return (cert, key)
    }
}
