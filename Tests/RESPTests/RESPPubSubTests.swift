import Glibc
import RESP
import Testing

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A plain-socket stream plugged in through the TLS hook, counting the bytes it moves, to prove that
/// `valkeys://` connections run over whatever `RESPTLSStreamFactory` supplies.
final class CountingStreamFactory: RESPTLSStreamFactory {
    let serverNames = Shared<[String]>([])
    let bytesWritten = Shared(0)

    final class Stream: RESPByteStream {
        let fileDescriptor: Int32
        let counter: Shared<Int>
        init(fileDescriptor: Int32, counter: Shared<Int>) {
            self.fileDescriptor = fileDescriptor
            self.counter = counter
        }
        func read(into buffer: UnsafeMutableRawBufferPointer) throws(RESPError) -> RESPIOResult {
            let n = Glibc.read(self.fileDescriptor, buffer.baseAddress, buffer.count)
            if n > 0 { return .transferred(n) }
            if n == 0 { return .closed }
            if errno == EAGAIN { return .wantRead }
            throw .io(operation: "read", endpoint: "test stream", errno: errno)
        }
        func write(_ bytes: UnsafeRawBufferPointer) throws(RESPError) -> RESPIOResult {
            let n = Glibc.send(self.fileDescriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n > 0 {
                self.counter.update { $0 += n }
                return .transferred(n)
            }
            if n < 0, errno != EAGAIN { throw .io(operation: "write", endpoint: "test stream", errno: errno) }
            return .wantWrite
        }
        func close() { _ = Glibc.close(self.fileDescriptor) }
    }

    func makeStream(fileDescriptor: Int32, serverName: String) throws(RESPError) -> any RESPByteStream {
        self.serverNames.update { $0.append(serverName) }
        return Stream(fileDescriptor: fileDescriptor, counter: self.bytesWritten)
    }
}

@Suite(.serialized) struct RESPPubSubTests {
    @Test(arguments: ServerKind.allCases)
    func subscriptionsDeliverMessagesAndResubscribeAfterReconnect(kind: ServerKind) async throws {
        try await withTestServer(kind) { server async throws in
            let client = server.client()
            defer { client.close() }
            let subscription = client.subscription()
            // A hang guard only (a lost event would wait forever), so generous: on a loaded machine a starved test
            // process was seen to need more than 20 s for these steps, and a 20 s guard closed the subscription
            // under the test ("the client was closed").
            let watchdog = Task {
                try await Task.sleep(for: .seconds(180))
                Issue.record("no progress within 180 s: the subscription is closed to end the test")
                subscription.close()
            }
            defer { watchdog.cancel() }
            try await subscription.subscribe(channels: ["news", "sport"])
            try await subscription.subscribe(patterns: ["log.*"])
            try await subscription.subscribe(shardChannels: ["{s}orders"])
            var iterator = subscription.makeAsyncIterator()
            var confirmations: Set<String> = []
            for _ in 0..<4 {
                if case .subscribed(let kind, let channel, _) = await iterator.next() {
                    confirmations.insert(kind + ":" + String(decoding: channel, as: UTF8.self))
                }
            }
            #expect(confirmations == ["subscribe:news", "subscribe:sport", "psubscribe:log.*", "ssubscribe:{s}orders"])

            #expect(try await client.send("PUBLISH", "news", "hello").integer == 1)
            #expect(try await client.send("PUBLISH", "log.error", "disk").integer == 1)
            #expect(try await client.send("SPUBLISH", "{s}orders", "o1").integer == 1)
            #expect(await iterator.next() == .message(channel: bytes("news"), payload: bytes("hello")))
            #expect(
                await iterator.next()
                    == .patternMessage(pattern: bytes("log.*"), channel: bytes("log.error"), payload: bytes("disk")))
            #expect(await iterator.next() == .shardMessage(channel: bytes("{s}orders"), payload: bytes("o1")))

            // Kill the subscriber's connection: it reconnects and subscribes again by itself.
            #expect(try await client.send("CLIENT", "KILL", "TYPE", "pubsub").integer == 1)
            var again: Set<String> = []
            while again.count < 4, let event = await iterator.next() {
                if case .subscribed(let kind, let channel, _) = event {
                    again.insert(kind + ":" + String(decoding: channel, as: UTF8.self))
                }
            }
            #expect(again == confirmations)
            #expect(try await client.send("PUBLISH", "sport", "goal").integer == 1)
            #expect(await iterator.next() == .message(channel: bytes("sport"), payload: bytes("goal")))
            try subscription.unsubscribe(channels: ["news"])
            try subscription.unsubscribe(patterns: ["log.*"])
            try subscription.unsubscribe(shardChannels: ["{s}orders"])
            // Unsubscribing is asynchronous: wait until the server has dropped all three.
            let unsubscribed = try await waitUntil {
                let channels = try await client.send("PUBSUB", "NUMSUB", "news")
                let patterns = try await client.send("PUBSUB", "NUMPAT")
                let shards = try await client.send("PUBSUB", "SHARDNUMSUB", "{s}orders")
                return channels == .array([.bulkString(bytes("news")), .integer(0)]) && patterns == .integer(0)
                    && shards == .array([.bulkString(bytes("{s}orders")), .integer(0)])
            }
            #expect(unsubscribed, "the server still lists the subscriptions")
            #expect(try await client.send("PUBLISH", "news", "unheard").integer == 0)
            #expect(try await client.send("PUBLISH", "log.x", "unheard").integer == 0)
            #expect(try await client.send("SPUBLISH", "{s}orders", "unheard").integer == 0)
            #expect(try await client.send("PUBLISH", "sport", "still").integer == 1)
            #expect(await iterator.next() == .message(channel: bytes("sport"), payload: bytes("still")))
            subscription.close()
            #expect(await iterator.next() == nil)
        }
    }

    @Test func concurrentSubscribesShareOneConnection() async throws {
        try await withTestServer(.valkey) { server async throws in
            let client = server.client()
            defer { client.close() }
            let subscription = client.subscription()
            defer { subscription.close() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<10 { group.addTask { try await subscription.subscribe(channels: ["c\(i)"]) } }
                try await group.waitForAll()
            }
            let pubsubClients = try await client.send("CLIENT", "LIST", "TYPE", "pubsub").string ?? ""
            #expect(pubsubClients.split(separator: "\n").count == 1)
            #expect(
                try await client.send("PUBSUB", "NUMSUB", "c0", "c9")
                    == .array([.bulkString(bytes("c0")), .integer(1), .bulkString(bytes("c9")), .integer(1)]))
        }
    }

    @Test func tlsHookCarriesTheConnection() async throws {
        try await withTestServer(.valkey) { server async throws in
            let factory = CountingStreamFactory()
            var configuration = try RESPConfiguration(url: "valkeys://localhost:\(server.port)")
            #expect(configuration.useTLS)
            configuration.tlsStreamFactory = factory
            let client = RESPClient(configuration: configuration)
            defer { client.close() }
            #expect(try await client.send("PING") == .simpleString(bytes("PONG")))
            #expect(factory.serverNames.value == ["localhost"])
            #expect(factory.bytesWritten.value > 14)
        }
    }
}

@Suite struct RESPConfigurationTests {
    @Test func parsesURLs() throws {
        let full = try RESPConfiguration(url: "valkey://app:p%40ss@db.example:6380/3")
        #expect(full.endpoint == .tcp(host: "db.example", port: 6380))
        #expect(full.username == "app")
        #expect(full.password == "p@ss")
        #expect(full.database == 3)
        #expect(!full.useTLS)
        let password = try RESPConfiguration(url: "redis://:secret@127.0.0.1")
        #expect(password.username == nil && password.password == "secret")
        #expect(password.endpoint == .tcp(host: "127.0.0.1", port: 6379))
        #expect(try RESPConfiguration(url: "rediss://[::1]:7000").endpoint == .tcp(host: "::1", port: 7000))
        #expect(try RESPConfiguration(url: "valkeys://h").useTLS)
        let unix = try RESPConfiguration(url: "unix:///run/valkey.sock?db=1")
        #expect(unix.endpoint == .unix(path: "/run/valkey.sock") && unix.database == 1)
        for bad in [
            "localhost:6379", "http://x", "valkey://h:0", "valkey://h:abc", "valkey://h/x", "valkey://", "unix://rel",
            "valkey://[::1",
        ] {
            #expect("\(bad)") { _ = try RESPConfiguration(url: bad) } throws: { error in
                guard case .invalidURL(let url, _) = error as? RESPError else { return false }
                return url == bad
            }
        }
    }

    @Test func backoffGrowsWithJitterUpToTheCap() {
        let policy = RESPConfiguration.Reconnect(maxAttempts: 10, baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        #expect(policy.delay(beforeAttempt: 1) == .zero)
        for _ in 0..<50 {
            let second = policy.delay(beforeAttempt: 2)
            #expect(second >= .milliseconds(50) && second <= .milliseconds(100))
            let fourth = policy.delay(beforeAttempt: 4)
            #expect(fourth >= .milliseconds(200) && fourth <= .milliseconds(400))
            #expect(policy.delay(beforeAttempt: 40) <= .seconds(1))
        }
    }
}
