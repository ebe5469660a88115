import Foundation
import Glibc
import Synchronization
import Testing

@testable import RESP

/// Memory bounds of a connection against a real valkey-server: the send queue while the server does not read,
/// a subscriber that does not read, a reply over the receive limit, and partial replies parsed once, not on
/// every read.
@Suite(.serialized) struct RESPBoundsTests {
    /// The server's process id (`INFO server`), to stop and continue it.
    static func serverPID(_ client: RESPClient) async throws -> pid_t {
        let info = try await client.send("INFO", "server").string ?? ""
        let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("process_id:") }
        let pid = line.flatMap { pid_t($0.dropFirst("process_id:".count)) } ?? 0
        #expect(pid > 0, "INFO server names the process id")
        return pid
    }

    /// While the server is stopped (SIGSTOP), callers queue commands until the send queue holds its limit; the
    /// rest suspend, and the queue never holds more than the limit plus one command. Once the server runs again,
    /// every command completes in order.
    @Test func theSendQueueIsBoundedWhileTheServerDoesNotRead() async throws {
        try await withTestServer(.valkey) { server in
            let limit = 1 << 20
            let valueSize = 256 << 10
            let callers = 96  // 24 MiB in all: more than loopback's socket buffers take
            let client = server.client {
                $0.sendBufferLimit = limit
                $0.commandTimeout = nil
                $0.keepAliveInterval = nil
            }
            let observer = server.client()
            let pid = try await Self.serverPID(observer)
            let connection = try await client.sharedConnection()
            let command = RESPCommand("SET", "key:0", [UInt8](repeating: 0x61, count: valueSize))
            #expect(kill(pid, SIGSTOP) == 0)
            var resumed = false
            defer { if !resumed { kill(pid, SIGCONT) } }
            let done = Shared(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<callers {
                    group.addTask { () async throws -> Void in
                        let value = [UInt8](repeating: UInt8(97 + i % 26), count: valueSize)
                        let reply = try await client.send("SET", "key:\(i)", value)
                        #expect(reply == .simpleString(Array("OK".utf8)))
                        done.update { $0 += 1 }
                    }
                }
                // The kernel's buffers fill, then the queue, then callers suspend.
                #expect(
                    await waitUntil(.seconds(30)) { connection.suspendedSenders > 0 && connection.queuedBytes >= limit },
                    "callers suspend once the queue is full")
                let bound = limit + command.encoded.count
                for _ in 0..<20 {
                    #expect(connection.queuedBytes <= bound, "queued \(connection.queuedBytes) of at most \(bound)")
                    #expect(done.update { $0 } == 0, "nothing completes while the server is stopped")
                    await Task.yield()
                }
                #expect(kill(pid, SIGCONT) == 0)
                resumed = true
                try await group.waitForAll()
            }
            #expect(done.update { $0 } == callers)
            #expect(connection.queuedBytes == 0)
            #expect(try await observer.send("DBSIZE") == .integer(Int64(callers)))
            client.close()
            observer.close()
        }
    }

    /// A subscriber that reads nothing while messages arrive gets `subscriberTooSlow`, its buffer is dropped and
    /// its sequence ends; a subscriber that keeps reading, with the same limit, receives every message.
    @Test func aSlowSubscriberGetsAClearErrorNotUnboundedMemory() async throws {
        try await withTestServer(.valkey) { server in
            let limit = 64 << 10
            let client = server.client { $0.subscriptionBufferLimit = limit }
            let publisher = server.client()
            let slow = client.subscription()
            let reader = client.subscription()
            try await slow.subscribe(channels: ["feed"])
            try await reader.subscribe(channels: ["feed"])
            var iterator = reader.makeAsyncIterator()
            guard case .subscribed = await iterator.next() else {
                Issue.record("the reader first sees its subscription confirmed")
                return
            }
            let payload = [UInt8](repeating: 0x78, count: 1024)
            let count = 200  // ~200 KiB: three times the limit
            var received = 0
            for i in 0..<count {
                _ = try await publisher.send("PUBLISH", "feed", payload)
                if case .message(_, let body) = await iterator.next(), body == payload { received += 1 }
                #expect(slow.bufferedBytes <= limit, "message \(i): \(slow.bufferedBytes) bytes buffered")
            }
            #expect(received == count, "a subscriber that reads gets every message")
            #expect(await waitUntil { slow.failure != nil })
            #expect(slow.failure == .subscriberTooSlow(buffered: slow.failureBuffered, limit: limit))
            #expect(slow.bufferedBytes == 0, "the slow subscriber's buffer is dropped")
            await #expect(throws: RESPError.self) { _ = try await slow.receive() }
            var slowIterator = slow.makeAsyncIterator()
            #expect(await slowIterator.next() == nil, "its sequence ended")
            #expect(slow.failure?.description.contains("fell") == true)
            slow.close()
            reader.close()
            client.close()
            publisher.close()
        }
    }

    /// A reply larger than `receiveBufferLimit` fails the connection with a clear limit error (the buffer never
    /// grows past the limit); the client reconnects for the next command.
    @Test func aReplyOverTheReceiveLimitFailsClearlyAndTheClientRecovers() async throws {
        try await withTestServer(.valkey) { server in
            let limit = 1 << 20
            let client = server.client { $0.receiveBufferLimit = limit }
            let writer = server.client()
            _ = try await writer.send("SET", "big", [UInt8](repeating: 0x62, count: 4 << 20))
            let connection = try await client.sharedConnection()
            do {
                _ = try await client.send("GET", "big")
                Issue.record("a 4 MiB reply over a 1 MiB receive limit must fail")
            } catch {
                #expect("\(error)".contains("receive buffer"), "\(error)")
            }
            #expect(connection.receiveBufferCapacity <= limit)
            #expect(try await client.send("PING") == .simpleString(Array("PONG".utf8)), "a new connection serves the next command")
            client.close()
            writer.close()
        }
    }

    /// A 64 MiB bulk reply arrives in many reads, but its bytes are parsed about twice (the header, then the
    /// whole value once the announced length is here), not once per read; the buffer grows with the bytes.
    @Test func aLargeBulkReplyIsParsedOnceItsAnnouncedBytesArrived() async throws {
        try await withTestServer(.valkey) { server in
            let size = 64 << 20
            let client = server.client()
            _ = try await client.send("SET", "big", [UInt8](repeating: 0x63, count: size))
            let connection = try await client.sharedConnection()
            let before = connection.parseAttempts
            let reply = try await client.send("GET", "big")
            let attempts = connection.parseAttempts - before
            #expect(reply.bytes?.count == size)
            #expect(attempts <= 4, "\(attempts) parses of one 64 MiB reply")
            client.close()
        }
    }

    /// The parser's lower bound for a huge announced bulk string with few bytes behind it is the announced
    /// length (so the connection waits for it instead of parsing again), and for aggregates counts the elements
    /// still to come.
    @Test func partialRepliesReportTheBytesTheyNeedAtLeast() throws {
        let parser = RESPParser()
        func needed(_ text: String) throws -> Int? {
            let bytes = Array(text.utf8)
            var minimum = 0
            let value = try bytes.withUnsafeBufferPointer { try parser.parse($0, minimumLength: &minimum) }
            return value == nil ? minimum : nil
        }
        let announced = 500_000_000
        let header = "$\(announced)\r\n"
        #expect(try needed(header + "abc") == header.utf8.count + announced + 2)
        #expect(try needed("*3\r\n:1\r\n") == 8 + 1 + 3)
        #expect(try needed("*2\r\n*2\r\n:1\r\n") == 12 + 1 + 3)
        #expect(try needed("+OK") == 4)
        #expect(try needed("") == 1)
    }
}

extension RESPSubscription {
    /// The byte count a `.subscriberTooSlow` failure reports.
    var failureBuffered: Int {
        if case .subscriberTooSlow(let buffered, _) = self.failure { return buffered }
        return -1
    }
}
