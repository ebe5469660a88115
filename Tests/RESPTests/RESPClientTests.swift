import RESP
import Synchronization
import Testing

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Integration tests against real valkey-server 8.1 and redis-server 7.0 started on loopback.
@Suite(.serialized) struct RESPClientTests {
    @Test(arguments: ServerKind.allCases)
    func basicCommandsAndErrors(kind: ServerKind) async throws {
        try await withTestServer(kind) { server async throws in
            let client = server.client { $0.clientName = "resp-tests" }
            defer { client.close() }
            #expect(try await client.send("PING") == .simpleString(bytes("PONG")))
            let binary: [UInt8] = [0, 13, 10, 255, 36, 42]
            #expect(try await client.send("SET", "k", binary) == .simpleString(bytes("OK")))
            #expect(try await client.send("GET", "k") == .bulkString(binary))
            #expect(try await client.send("GET", "missing") == .null)
            #expect(try await client.send("INCRBY", "n", 41) == .integer(41))
            #expect(try await client.send("CLIENT", "GETNAME").string == "resp-tests")
            await #expect(
                throws: RESPError.server(
                    code: "WRONGTYPE", message: "Operation against a key holding the wrong kind of value", command: "LPUSH")
            ) {
                _ = try await client.send("LPUSH", "k", "x")
            }
            await #expect {
                _ = try await client.send("NOSUCHCOMMAND")
            } throws: { ($0 as? RESPError)?.serverCode == "ERR" }
            // The connection stays usable after error replies.
            #expect(try await client.send("INCR", "n") == .integer(42))
            let hello = try await client.send("HELLO", "3")
            #expect(hello["proto"]?.integer == 3)
            #expect(hello["server"]?.string == (kind == .valkey ? "valkey" : "redis"))
        }
    }

    @Test(arguments: ServerKind.allCases)
    func everyReplyTypeViaDebugProtocol(kind: ServerKind) async throws {
        try await withTestServer(kind) { server async throws in
            let pushes = Shared<[RESPValue]>([])
            let client = server.client { $0.pushHandler = { push in pushes.update { $0.append(push) } } }
            defer { client.close() }
            func debug(_ type: String) async throws -> RESPValue { try await client.send("DEBUG", "PROTOCOL", type) }
            #expect(try await debug("string") == .bulkString(bytes("Hello World")))
            #expect(try await debug("integer") == .integer(12345))
            #expect(try await debug("double") == .double(3.141))
            #expect(try await debug("bignum") == .bigNumber(bytes("1234567999999999999999999999999999999")))
            #expect(try await debug("null") == .null)
            #expect(try await debug("array") == .array([.integer(0), .integer(1), .integer(2)]))
            #expect(try await debug("set") == .set([.integer(0), .integer(1), .integer(2)]))
            #expect(
                try await debug("map")
                    == .map([
                        RESPPair(key: .integer(0), value: .boolean(false)),
                        RESPPair(key: .integer(1), value: .boolean(true)),
                        RESPPair(key: .integer(2), value: .boolean(false)),
                    ]))
            #expect(try await debug("true") == .boolean(true))
            #expect(try await debug("false") == .boolean(false))
            #expect(
                try await debug("verbatim")
                    == .verbatimString(format: bytes("txt"), text: bytes("This is a verbatim\nstring")))
            let attributed = try await debug("attrib")
            guard case .attributed(let attributes, let value) = attributed else {
                Issue.record("expected an attributed reply, got \(attributed.summary)")
                return
            }
            #expect(attributes.first?.key == .bulkString(bytes("key-popularity")))
            #expect(value.string == "Some real reply following the attribute")
            #expect(try await debug("push").string == "Some real reply following the push reply")
            #expect(pushes.value == [.push([.bulkString(bytes("server-cpu-usage")), .integer(42)])])
        }
    }

    @Test(arguments: ServerKind.allCases)
    func largeBulkValue(kind: ServerKind) async throws {
        try await withTestServer(kind) { server async throws in
            let client = server.client()
            defer { client.close() }
            var value = [UInt8](repeating: 0x61, count: 64 << 20)
            for i in stride(from: 0, to: value.count, by: 4099) { value[i] = UInt8(truncatingIfNeeded: i) }
            #expect(try await client.send("SET", "big", value) == .simpleString(bytes("OK")))
            #expect(try await client.send("STRLEN", "big") == .integer(Int64(value.count)))
            let reply = try await client.send("GET", "big")
            #expect(reply.bytes == value)
            #expect(try await client.send("PING") == .simpleString(bytes("PONG")))
        }
    }

    @Test(arguments: ServerKind.allCases)
    func pipelineOf100kCommands(kind: ServerKind) async throws {
        try await withTestServer(kind) { server async throws in
            let client = server.client()
            defer { client.close() }
            let commands = (0..<100_000).map { _ in RESPCommand("INCR", "counter") }
            let results = try await client.pipeline(commands)
            #expect(results.count == 100_000)
            let values = results.compactMap { try? $0.get().integer }
            #expect(values == Array(1...100_000))
            let mixed = try await client.pipeline([
                RESPCommand("SET", "a", "1"), RESPCommand("LPUSH", "a", "x"), RESPCommand("GET", "a"),
            ])
            #expect(try mixed[0].get() == .simpleString(bytes("OK")))
            #expect((try? mixed[1].get()) == nil)
            #expect(try mixed[2].get() == .bulkString(bytes("1")))
        }
    }

    @Test(arguments: ServerKind.allCases)
    func concurrentCallersShareOneConnection(kind: ServerKind) async throws {
        try await withTestServer(kind) { server async throws in
            let client = server.client()
            defer { client.close() }
            let seen = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for task in 0..<200 {
                    group.addTask {
                        var mine: [Int64] = []
                        for i in 0..<50 {
                            _ = try await client.send("SET", "t\(task):\(i)", "\(task * 1000 + i)")
                            if let n = try await client.send("INCR", "shared").integer { mine.append(n) }
                            #expect(try await client.send("GET", "t\(task):\(i)").string == "\(task * 1000 + i)")
                        }
                        return mine
                    }
                }
                var all: [Int64] = []
                for try await part in group { all += part }
                return all
            }
            #expect(seen.sorted() == Array(1...10_000))
            // The same through tasks that run on the client's event-loop executor.
            let onLoop = try await withThrowingTaskGroup(of: Int.self) { group in
                for task in 0..<50 {
                    group.addTask(executorPreference: client.taskExecutor) {
                        let replies = try await client.pipeline((0..<20).map { _ in RESPCommand("INCR", "loop:\(task)") })
                        let last = try await client.send("GET", "loop:\(task)")
                        #expect(replies.compactMap { try? $0.get().integer } == Array(1...20))
                        return Int(last.integer ?? 0)
                    }
                }
                var total = 0
                for try await n in group { total += n }
                return total
            }
            #expect(onLoop == 50 * 20)
            let clients = try await client.send("CLIENT", "LIST").string ?? ""
            #expect(clients.split(separator: "\n").count == 1)
        }
    }
}
