import ArrowIPC
import FlightProto
import FlightRPC
import Foundation
import FlightRPC
import GRPCWire
import Node
import Testing

/// Hostile DoPuts against the real `valkeyflight flight` binary: the inputs that crashed or fooled earlier
/// versions (Int64-extreme lengths, row and dictionary totals beyond Int64, misaligned buffers — every file of
/// Tests/Fixtures/ArrowIPC/fuzz-regressions, fuzzer finds included) each get INVALID_ARGUMENT naming the problem,
/// a long chain of delta dictionaries is stored and served, and throughout the node stays up, keeps what pyarrow
/// stored before and serves a legitimate pyarrow client after.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct HardeningDoPutTests {
    static let regressions = PyArrow.fixtures.appendingPathComponent("ArrowIPC/fuzz-regressions")

    /// `file → expected error description` from the folder's EXPECTED.
    static func expected() throws -> [String: String] {
        let text = try String(contentsOf: Self.regressions.appendingPathComponent("EXPECTED"), encoding: .utf8)
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "\t", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }

    /// pyarrow's side: `put` stores a 1000-row table under keep/before; `check` reads it back, stores and reads
    /// keep/after, reads the delta chain and lists the keys. Prints one JSON line.
    static let pyarrowCode = """
        import json, sys
        import pyarrow as pa, pyarrow.flight as fl
        url, mode = sys.argv[1], sys.argv[2]
        client = fl.connect(url)
        table = pa.table({"id": pa.array(range(1000), pa.int64()), "name": pa.array([f"row {i}" for i in range(1000)])})
        def put(key):
            writer, _ = client.do_put(fl.FlightDescriptor.for_path(*key.split("/")), table.schema)
            writer.write_table(table)
            writer.close()
        def get(key):
            return client.do_get(fl.Ticket(key.encode())).read_all()
        if mode == "put":
            put("keep/before")
            print(json.dumps({"stored": True}))
        else:
            facts = {"before_equal": get("keep/before").equals(table)}
            put("keep/after")
            facts["after_equal"] = get("keep/after").equals(table)
            chain = get("chain/deltas")
            facts["chain_rows"] = chain.num_rows
            facts["chain_batches"] = len(chain.column("d").chunks)
            facts["chain_last"] = chain.column("d").chunks[-1][0].as_py()
            facts["keys"] = sorted(info.endpoints[0].ticket.ticket.decode() for info in client.list_flights())
            print(json.dumps(facts))
        """

    static func pyarrow(_ arguments: [String]) async throws -> PyJSON {
        let child = try TestChildProcess(PyArrow.python, ["-c", Self.pyarrowCode] + arguments,
                                         environment: ["PYTHONDONTWRITEBYTECODE": "1"])
        child.closeInput()
        defer { child.terminate() }
        guard await child.waitForExit(within: 120) else { throw FlightTestError("pyarrow \(arguments) did not finish; \(child.stderr)") }
        try #require(child.exitStatus == 0, "pyarrow \(arguments) failed:\n\(child.stderr)")
        return try PyJSON.lastLine(of: child.stdout)
    }

    /// An IPC stream of `count` one-row batches of a dictionary-encoded utf8 column, each batch preceded by a
    /// delta adding the value it uses: a chain of `count - 1` deltas (cost O(count²) before deltas were O(1)).
    static func deltaChain(_ count: Int) throws -> [UInt8] {
        let encoding = DictionaryEncoding(id: 1)
        let schema = Schema([Field("d", .utf8, dictionary: encoding)])
        var writer = IPCWriter(schema: schema, format: .stream)
        var dictionary = DictionaryValues(.utf8(["v0"]))
        for index in 0..<count {
            if index > 0 { dictionary = try dictionary.appending(.utf8(["v\(index)"])) }
            let column = ArrayData.dictionaryEncoded([Int32(index)], dictionary: dictionary, encoding: encoding)
            try writer.write(try RecordBatch(schema: schema, columns: [column]))
        }
        writer.finish()
        return writer.bytes()
    }

    static func status(_ body: () async throws -> Void) async -> GRPCStatus? {
        do {
            try await body()
            return nil
        } catch let status as GRPCStatus {
            return status
        } catch {
            return GRPCStatus(.unknown, "\(error)")
        }
    }

    @Test func hostileInputsGetInvalidArgumentAndTheNodeKeepsServing() async throws {
        let server = try await FlightServerProcess.start()
        defer { server.child.terminate() }
        #expect(try await Self.pyarrow([server.url, "put"])["stored"] == true)

        let client = try FlightClient(location: try FlightLocation(parsing: server.url))
        defer { client.close() }
        let expected = try Self.expected()
        let inputs = try FileManager.default.contentsOfDirectory(atPath: Self.regressions.path).sorted()
            .filter { !["README.md", "EXPECTED"].contains($0) }
        #expect(inputs.count >= 6, "fuzz-regressions holds only \(inputs)")
        for (index, name) in inputs.enumerated() {
            let bytes = [UInt8](try Data(contentsOf: Self.regressions.appendingPathComponent(name)))
            let descriptor = FlightDescriptor(path: ["hostile", "n\(index)"])
            let status = await Self.status {
                if name.hasPrefix("doput-") {
                    try await Self.sendFlightData(bytes, descriptor: descriptor, client: client)
                } else {
                    _ = try await client.put(descriptor, ipc: bytes[...])
                }
            }
            #expect(status?.code == .invalidArgument, "\(name): \(String(describing: status))")
            if let description = expected[name] {
                #expect(status?.message.contains(description) == true, "\(name): \(String(describing: status?.message))")
            }
            #expect(server.child.process.isRunning, "the node died on \(name); stderr:\n\(server.child.stderr)")
        }

        // A long chain of deltas is legitimate: stored whole, then served to pyarrow below.
        let chainLength = 5000
        let chain = try Self.deltaChain(chainLength)
        let results = try await client.put(FlightDescriptor(path: ["chain", "deltas"]), ipc: chain[...])
        let reply = String(decoding: results.first?.value ?? [], as: UTF8.self)
        #expect(reply.contains("\"rows\":\(chainLength)"), "\(reply)")
        #expect(try await client.doGet(Ticket(Array("chain/deltas".utf8))).readAll().count == chainLength)

        let facts = try await Self.pyarrow([server.url, "check"])
        #expect(facts["before_equal"] == true, "what pyarrow stored before the hostile inputs is intact")
        #expect(facts["after_equal"] == true, "a legitimate pyarrow client is served after them")
        #expect(facts["chain_rows"] == .int(chainLength))
        #expect(facts["chain_batches"] == .int(chainLength))
        #expect(facts["chain_last"] == .string("v\(chainLength - 1)"))
        #expect(facts["keys"] == ["chain/deltas", "keep/after", "keep/before"], "no hostile input left anything behind")

        let stop = await server.stop()
        #expect(stop.exited && stop.status == 0, "server did not exit 0 after SIGTERM; stderr:\n\(stop.stderr)")
    }

    /// `valkeyflight ipc inspect` on every IPC input of the folder: a one-line error and exit status 1, never a
    /// trap (Int64-extreme lengths used to end it with "arithmetic overflow").
    @Test func ipcInspectRejectsEveryRegressionInputCleanly() async throws {
        let expected = try Self.expected()
        let inputs = try FileManager.default.contentsOfDirectory(atPath: Self.regressions.path).sorted()
            .filter { !["README.md", "EXPECTED"].contains($0) && !$0.hasPrefix("doput-") }
        #expect(inputs.count >= 6)
        for name in inputs {
            let result = try await CLI.run(["ipc", "inspect", Self.regressions.appendingPathComponent(name).path])
            #expect(result.status == 1, "\(name): status \(result.status), stderr \(result.stderr)")
            if let description = expected[name] {
                #expect(result.stderr.contains(description), "\(name): \(result.stderr)")
            }
        }
    }

    /// Replays a fuzzer's FlightData sequence (gRPC-framed protobufs, see Fuzz/FlightDoPutFuzz): each message's
    /// header and body are sent under `descriptor`.
    static func sendFlightData(_ bytes: [UInt8], descriptor: FlightDescriptor, client: FlightClient) async throws {
        let writer = client.doPut(descriptor)
        var index = 0
        while bytes.count - index >= 5 {
            let length = Int(bytes[index + 1]) << 24 | Int(bytes[index + 2]) << 16 | Int(bytes[index + 3]) << 8 | Int(bytes[index + 4])
            guard length <= bytes.count - index - 5 else { break }
            let data = try FlightData(serializedBytes: bytes[(index + 5)..<(index + 5 + length)])
            try await writer.send(header: data.dataHeader, body: [data.dataBody], bodyLength: data.dataBody.count)
            index += 5 + length
        }
        _ = try await writer.finish()
    }
}
