import Foundation
import Synchronization
import Testing

@testable import GRPCWire

/// Hand-built h2c client steps on top of ``RawConnection`` (preface, requests, DATA, frame reading).
extension RawConnection {
    /// Reads the server's SETTINGS, then sends the client preface, empty SETTINGS and the ACK.
    func handshake() {
        var buf = [UInt8](repeating: 0, count: 4096)
        _ = recv(self.fd, &buf, buf.count, 0)
        self.send(
            Self.preface + Self.frame(type: 0x4, flags: 0, stream: 0, [])
                + Self.frame(type: 0x4, flags: 0x1, stream: 0, []))
    }

    /// HEADERS (END_HEADERS) for a gRPC POST to `path` on `stream`.
    func request(stream: UInt32, path: String, endStream: Bool = false) {
        let block = Self.headerBlock([
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ])
        self.send(Self.frame(type: 0x1, flags: 0x4 | (endStream ? 0x1 : 0), stream: stream, block))
    }

    /// DATA frames of at most 16 KiB carrying `bytes`.
    func data(stream: UInt32, _ bytes: [UInt8], endStream: Bool = false) {
        var offset = 0
        repeat {
            let n = min(16 << 10, bytes.count - offset)
            let last = offset + n == bytes.count
            self.send(
                Self.frame(
                    type: 0x0, flags: last && endStream ? 0x1 : 0, stream: stream, Array(bytes[offset..<(offset + n)])))
            offset += n
        } while offset < bytes.count
    }

    /// A gRPC length prefix announcing `length` bytes.
    static func grpcPrefix(_ length: UInt32) -> [UInt8] { [0] + Self.u32(length) }

    /// Reads frames until `stop` returns true (true), or the peer closes or 5 s pass without data (false).
    func readFrames(_ stop: (_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) -> Bool) -> Bool {
        var pending: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<10_000 {
            while pending.count >= 9 {
                let length = Int(pending[0]) << 16 | Int(pending[1]) << 8 | Int(pending[2])
                guard pending.count >= 9 + length else { break }
                let stream = UInt32(pending[5] & 0x7F) << 24 | UInt32(pending[6]) << 16 | UInt32(pending[7]) << 8
                    | UInt32(pending[8])
                if stop(pending[3], pending[4], stream, Array(pending[9..<(9 + length)])) { return true }
                pending.removeFirst(9 + length)
            }
            let n = recv(self.fd, &buf, buf.count, 0)
            if n <= 0 { return false }
            pending += buf[0..<n]
        }
        return false
    }
}

/// Runs blocking socket reads on a thread of their own instead of a cooperative-pool thread.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

/// Counts what the admission hook saw; refuses messages over `limit`.
final class CountingAdmission: GRPCMessageAdmission {
    let limit: Int
    let admitted = Atomic<Int>(0)
    let released = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    let largestAnnounced = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    func admit(path: String, metadata: GRPCMetadata, length: Int) -> GRPCStatus? {
        _ = self.largestAnnounced.max(length, ordering: .relaxed)
        if length > self.limit {
            self.refused.add(1, ordering: .relaxed)
            return GRPCStatus(.resourceExhausted, "admission: \(length) bytes is over \(self.limit)")
        }
        self.admitted.add(1, ordering: .relaxed)
        return nil
    }

    func release(path: String, length: Int) { self.released.add(1, ordering: .relaxed) }
}

/// The deframer's buffer grows with the bytes that arrived, and every step is charged first.
@Suite struct DeframerBudgetTests {
    @Test func bufferGrowsWithReceivedBytesNotWithTheAnnouncement() throws {
        var d = MessageDeframer(maxMessageSize: Int(Int32.max))
        var charged = 0
        let prefix = RawConnection.grpcPrefix(UInt32(Int32.max)) + [1, 2, 3]
        try prefix.withUnsafeBufferPointer { buf in
            try d.feed(buf, charge: { charged += $0; return true }) { _, _ in Issue.record("no message is complete") }
        }
        #expect(charged == 64 << 10, "a 2 GiB prefix with 3 bytes behind it costs one 64 KiB buffer")
        #expect(d.partialBytes == 3)
        #expect(d.reset() == 64 << 10)
    }

    @Test func capacityStaysWithinTwiceTheReceivedBytesAndTheMessageIsExact() throws {
        let size = 10 << 20 + 123
        let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let wire = RawConnection.grpcPrefix(UInt32(size)) + body
        var d = MessageDeframer(maxMessageSize: 16 << 20)
        var charged = 0
        var received = 0
        var out: [[UInt8]] = []
        var offset = 0
        while offset < wire.count {
            let n = min(4096, wire.count - offset)
            try wire[offset..<(offset + n)].withUnsafeBufferPointer { buf in
                try d.feed(buf, charge: { charged += $0; return true }) { m, c in
                    out.append(m)
                    #expect(c == size)
                }
            }
            offset += n
            received = out.isEmpty ? d.partialBytes : size
            // Doubling while under 1/64 of the message, then the whole message at once.
            let bound = received * 64 >= size ? size : max(64 << 10, 2 * received)
            #expect(charged <= bound, "charged \(charged) for \(received) received bytes")
        }
        #expect(out.count == 1)
        #expect(out.first == body)
        #expect(charged == size, "the final buffer is exactly the announced size")
    }

    @Test func refusedChargeAndAdmissionEndTheMessage() throws {
        let wire = RawConnection.grpcPrefix(200_000) + [UInt8](repeating: 7, count: 100_000)
        var d = MessageDeframer(maxMessageSize: 1 << 20)
        var budget = 100_000
        // 64 KiB fit; the step to the whole 200,000 bytes does not.
        #expect(throws: GRPCWireError.receiveBudgetExhausted(requested: 200_000 - 65536)) {
            try wire.withUnsafeBufferPointer { buf in
                try d.feed(
                    buf,
                    charge: { n in
                        guard n <= budget else { return false }
                        budget -= n
                        return true
                    }
                ) { _, _ in }
            }
        }
        var d2 = MessageDeframer(maxMessageSize: 1 << 20)
        #expect(throws: GRPCWireError.messageRefused(code: 8, message: "no")) {
            try wire.withUnsafeBufferPointer { buf in
                try d2.feed(buf, admit: { _ in GRPCStatus(.resourceExhausted, "no") }) { _, _ in }
            }
        }
        #expect(d2.charged == 0, "a refused message buffers nothing")
    }
}

/// Request bytes a peer makes the server hold are charged against the connection and server budgets.
@Suite(.serialized) struct ReceiveBudgetTests {
    /// The defect: each 5-byte prefix reserved what it announced (up to 2 GiB) before any data arrived.
    @Test func twoGiBPrefixesOnManyStreamsHoldOneSmallBufferEach() async throws {
        let server = try ServerBehaviourTests.server(Probe())
        let raw = try RawConnection(port: server.port)
        raw.handshake()
        let streams = 200
        for i in 0..<streams {
            let id = UInt32(2 * i + 1)
            raw.request(stream: id, path: ServerBehaviourTests.echoPath)
            raw.data(stream: id, RawConnection.grpcPrefix(UInt32(Int32.max)) + [1, 2, 3, 4])
        }
        let expected = streams * (64 << 10)
        #expect(await ServerBehaviourTests.waitUntil { server.bufferedRequestBytes == expected })
        #expect(server.bufferedRequestBytes == expected, "\(streams) prefixes of 2 GiB hold \(expected) bytes")
        // A legitimate client is served meanwhile.
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[9, 9][...]]) == [9, 9])
        raw.close()
        // Closing returns it all. (This once failed in about one full run in three: the raw socket had no
        // close-on-exec, so a child another suite spawned meanwhile inherited it and kept the connection open.)
        #expect(
            await ServerBehaviourTests.waitUntil { server.bufferedRequestBytes == 0 },
            "closing returns it all (\(server.bufferedRequestBytes) bytes still charged)")
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// The defect: bytes of a half-received message did not count, so one stream could hold 2 GiB.
    @Test func halfMessageHoldsAtMostTwiceWhatArrivedAndIsReleasedOnReset() async throws {
        let server = try ServerBehaviourTests.server(Probe())
        let raw = try RawConnection(port: server.port)
        raw.handshake()
        raw.request(stream: 1, path: ServerBehaviourTests.echoPath)
        let sent = 1 << 20
        raw.data(stream: 1, RawConnection.grpcPrefix(256 << 20) + [UInt8](repeating: 1, count: sent))
        #expect(await ServerBehaviourTests.waitUntil { server.bufferedRequestBytes >= sent })
        #expect(server.bufferedRequestBytes <= 2 * sent, "held \(server.bufferedRequestBytes) for \(sent) received")
        // RST_STREAM(CANCEL) drops the partial message and its charge.
        raw.send(RawConnection.frame(type: 0x3, flags: 0, stream: 1, RawConnection.u32(0x8)))
        #expect(await ServerBehaviourTests.waitUntil { server.bufferedRequestBytes == 0 })
        raw.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func messageOverTheConnectionBudgetIsResourceExhaustedAndOthersAreServed() async throws {
        let server = try ServerBehaviourTests.server(Probe()) { $0.connectionReceiveBudget = 1 << 20 }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        do {
            _ = try await channel.unary(
                path: ServerBehaviourTests.echoPath, request: [[UInt8](repeating: 1, count: 2 << 20)[...]],
                timeout: .seconds(20))
            Issue.record("a 2 MiB request passed a 1 MiB connection budget")
        } catch {
            #expect(error.code == .resourceExhausted, "\(error)")
            #expect(error.message.contains("receive budget"), "\(error)")
        }
        let small = [UInt8](repeating: 2, count: 512 << 10)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [small[...]]) == small)
        #expect(await ServerBehaviourTests.waitUntil { server.bufferedRequestBytes == 0 })
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// Eight raw connections each announce a 256 MiB message and send 1 MiB + 1 byte of it (so each wants a 2 MiB
    /// buffer); returns them and how many were refused. Refused streams get their status (HEADERS with END_STREAM)
    /// at once; admitted ones wait for more (their read ends after the 5 s receive timeout, on a thread of its own
    /// so the server's handlers keep their threads).
    static func eightConnectionsWanting2MiB(port: Int) async throws -> (raws: [RawConnection], refused: Int) {
        var raws: [RawConnection] = []
        for _ in 0..<8 {
            let raw = try RawConnection(port: port)
            raw.handshake()
            raw.request(stream: 1, path: ServerBehaviourTests.echoPath)
            raw.data(stream: 1, RawConnection.grpcPrefix(256 << 20) + [UInt8](repeating: 3, count: 1 << 20 + 1))
            raws.append(raw)
        }
        let connections = raws
        let refused = await offThePool {
            connections.filter { raw in
                raw.readFrames { type, flags, stream, _ in type == 0x1 && flags & 0x1 != 0 && stream == 1 }
            }.count
        }
        return (raws, refused)
    }

    @Test func serverBudgetBoundsAllConnectionsTogether() async throws {
        let server = try ServerBehaviourTests.server(Probe()) { $0.serverReceiveBudget = 4 << 20 }
        let (raws, refused) = try await Self.eightConnectionsWanting2MiB(port: server.port)
        // Each connection wants a 2 MiB buffer for its 1 MiB + 1 byte: at most two fit, the others are refused.
        #expect(server.bufferedRequestBytes <= 4 << 20)
        #expect(refused >= 6, "\(refused) of 8 connections were refused")
        for raw in raws { raw.close() }
        #expect(await ServerBehaviourTests.waitUntil(.seconds(30)) { server.bufferedRequestBytes == 0 })
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// All connections from one address share the peer budget: more connections do not buy a peer more of the
    /// server's budget (here 64 MiB), and the refusals name the budget.
    @Test func peerBudgetBoundsAllConnectionsOfOneAddress() async throws {
        let server = try ServerBehaviourTests.server(Probe()) {
            $0.serverReceiveBudget = 64 << 20
            $0.peerReceiveBudget = 4 << 20
        }
        let (raws, refused) = try await Self.eightConnectionsWanting2MiB(port: server.port)
        #expect(server.bufferedRequestBytes <= 4 << 20, "\(server.bufferedRequestBytes) bytes held for one peer")
        #expect(refused >= 6, "\(refused) of 8 connections were refused")
        for raw in raws { raw.close() }
        #expect(await ServerBehaviourTests.waitUntil(.seconds(30)) { server.bufferedRequestBytes == 0 })
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func admissionSeesTheAnnouncedSizeBeforeAnyBuffering() async throws {
        let admission = CountingAdmission(limit: 1 << 20)
        let server = try ServerBehaviourTests.server(Probe()) { $0.admission = admission }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        do {
            _ = try await channel.unary(
                path: ServerBehaviourTests.echoPath, request: [[UInt8](repeating: 1, count: 4 << 20)[...]],
                timeout: .seconds(20))
            Issue.record("the admission hook did not refuse 4 MiB")
        } catch {
            #expect(error.code == .resourceExhausted, "\(error)")
            #expect(error.message == "admission: \(4 << 20) bytes is over \(1 << 20)")
        }
        #expect(admission.largestAnnounced.load(ordering: .relaxed) == 4 << 20)
        let ok = [UInt8](repeating: 5, count: 1 << 20)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [ok[...]]) == ok)
        #expect(admission.refused.load(ordering: .relaxed) == 1)
        #expect(
            await ServerBehaviourTests.waitUntil {
                admission.released.load(ordering: .relaxed) == admission.admitted.load(ordering: .relaxed)
            }, "every admitted message is released once")
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// The connection's send budget: 24 streams flooding 1 MiB messages to a client that reads nothing queue one
    /// message each beyond the budget instead of 4 MiB each (`streamSendBufferLimit`).
    @Test func sendBudgetBoundsWhatOneConnectionQueues() async throws {
        let probe = Probe()
        let server = try ServerBehaviourTests.server(probe) { $0.connectionSendBufferLimit = 4 << 20 }
        let raw = try RawConnection(port: server.port)
        // Huge windows: only TCP and the server's own limits hold the responses back.
        var out = RawConnection.preface
        out += RawConnection.frame(type: 4, flags: 0, stream: 0, [0, 4] + RawConnection.u32(0x7FFF_FFFF))
        out += RawConnection.frame(type: 8, flags: 0, stream: 0, RawConnection.u32(0x7FFF_FFFF - 65535))
        out += RawConnection.frame(type: 4, flags: 1, stream: 0, [])
        let streams = 24
        for i in 0..<streams {
            let id = UInt32(2 * i + 1)
            let headers = RawConnection.headerBlock([
                (":method", "POST"), (":scheme", "http"), (":path", ServerBehaviourTests.floodPath),
                (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
            ])
            out += RawConnection.frame(type: 1, flags: 0x4, stream: id, headers)
            out += RawConnection.frame(type: 0, flags: 0x1, stream: id, [0, 0, 0, 0, 1, 200])
        }
        raw.send(out)
        #expect(await ServerBehaviourTests.waitUntil { probe.sent.load(ordering: .relaxed) > 0 })
        // Wait until the handlers stop making progress (bounded: 20 s).
        var last = -1
        var steady = 0
        for _ in 0..<80 where steady < 4 {
            try await Task.sleep(for: .milliseconds(250))
            let now = probe.sent.load(ordering: .relaxed)
            steady = now == last ? steady + 1 : 0
            last = now
        }
        #expect(steady >= 4, "the senders did not stall")
        // Socket buffers, the 8 MiB output queue, the 4 MiB budget and one message per stream (measured: 11; 85 with
        // the budget off).
        print("send budget: \(last) MiB accepted by 24 streams")
        #expect(last < 40, "\(last) MiB accepted on one connection that reads nothing (85 without the budget)")
        raw.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
