import Foundation
import GRPCInteropService
import Testing

@testable import GRPCWire

/// The in-place receive path: `H2FrameBoundaries` follows the framing nghttp2 parses, `MessageDeframer` hands out
/// the free room of a message buffer and recognises bytes read into it, and a server receiving large messages
/// from grpcio (the reference peer) and from our client reads most of their bytes straight into message buffers.
@Suite(.timeLimit(.minutes(2)))
struct InPlaceReceiveTests {
    struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var length: Int
    }

    static func encode(_ frames: [Frame], preface: Bool, random: inout some RandomNumberGenerator) -> [UInt8] {
        var bytes: [UInt8] = preface ? Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) : []
        for f in frames {
            bytes += [UInt8(f.length >> 16 & 0xff), UInt8(f.length >> 8 & 0xff), UInt8(f.length & 0xff), f.type, f.flags]
            bytes += [UInt8(f.stream >> 24), UInt8(f.stream >> 16 & 0xff), UInt8(f.stream >> 8 & 0xff), UInt8(f.stream & 0xff)]
            bytes += Self.noise(f.length, using: &random)
        }
        return bytes
    }

    /// `count` pseudo-random bytes, eight at a time (these tests run on the shared pool, so they stay cheap).
    static func noise(_ count: Int, using random: inout some RandomNumberGenerator) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { raw in
            var i = 0
            while i < count {
                var word = random.next()
                withUnsafeBytes(of: &word) { w in
                    let k = min(8, count - i)
                    raw.baseAddress!.advanced(by: i).copyMemory(from: w.baseAddress!, byteCount: k)
                }
                i += 8
            }
        }
        return bytes
    }

    @Test(arguments: [false, true])
    func frameBoundariesFollowRandomFraming(server: Bool) {
        var random = SplitMix(seed: server ? 7 : 11)
        for _ in 0..<10 {
            let frames = (0..<40).map { _ in
                Frame(
                    type: [0, 0, 0, 1, 4, 6, 8, 9].randomElement(using: &random)!,
                    flags: [0, 1, 8, 9, 4].randomElement(using: &random)!,
                    stream: [0, 1, 3, 0x8000_0005].randomElement(using: &random)!,
                    length: [0, 1, 9, 100, 16384, 70000, 90_000].randomElement(using: &random)!)
            }
            let bytes = Self.encode(frames, preface: server, random: &random)
            // Where each frame's payload lies, and which stream the tracker must report for it.
            var spans: [(start: Int, end: Int, stream: Int32?, largeFlow: Bool)] = []
            var at = server ? 24 : 0
            var flow = false
            for f in frames {
                at += 9
                let stream = Int32(bitPattern: f.stream & 0x7fff_ffff)
                let data = f.type == 0 && f.flags & 0x08 == 0 && f.length > 0 && stream != 0
                if f.type == 0 && f.length >= 65536 { flow = true }
                if f.type == 1 { flow = false }
                spans.append((at, at + f.length, data ? stream : nil, flow))
                at += f.length
            }
            var tracker = H2FrameBoundaries(server: server)
            var position = 0
            var span = 0
            bytes.withUnsafeBytes { all in
                while position < bytes.count {
                    while span < spans.count && spans[span].end <= position && !(spans[span].start == position) {
                        span += 1
                    }
                    if span < spans.count && spans[span].start <= position && position < spans[span].end {
                        let s = spans[span]
                        #expect(tracker.payloadLeft == s.end - position)
                        #expect(tracker.dataStream == s.stream)
                        #expect(tracker.largeDataFlow == s.largeFlow)
                    } else {
                        #expect(tracker.payloadLeft == 0)
                        #expect(tracker.dataStream == nil)
                    }
                    let step = min(bytes.count - position, Int.random(in: 1...90_000, using: &random))
                    if tracker.payloadLeft > 0 && Bool.random(using: &random) {
                        let k = min(step, tracker.payloadLeft)
                        tracker.advancePayload(k)
                        position += k
                    } else {
                        tracker.advance(UnsafeRawBufferPointer(rebasing: all[position..<(position + step)]))
                        position += step
                    }
                }
            }
            #expect(tracker.payloadLeft == 0)
        }
    }

    /// Messages received partly in place (written into `receiveRoom`, then fed from there) and partly copied come
    /// out whole and exact, with every capacity step charged once.
    @Test func deframerReceivesInPlaceAndByCopy() throws {
        var random = SplitMix(seed: 3)
        let sizes = [0, 1, 5, 70_000, 1 << 20, (2 << 20) + 7, 65_536, 200_001]
        var stream: [UInt8] = []
        var messages: [[UInt8]] = []
        for size in sizes {
            let m = Self.noise(size, using: &random)
            messages.append(m)
            stream += grpcPrefix(length: size) + m
        }
        var d = MessageDeframer(maxMessageSize: 8 << 20)
        var charged = 0
        var released = 0
        var out: [[UInt8]] = []
        var inPlace = 0
        var position = 0
        let charge: (Int) -> Bool = { charged += $0; return true }
        while position < stream.count {
            let k = min(stream.count - position, Int.random(in: 1...300_000, using: &random))
            if Bool.random(using: &random), let target = d.receiveRoom(charge: charge) {
                let n = min(k, target.room.count)
                stream.withUnsafeBytes { src in
                    target.room.baseAddress!.copyMemory(from: src.baseAddress! + position, byteCount: n)
                }
                try withExtendedLifetime(target.owner) {
                    try d.feed(UnsafeBufferPointer(rebasing: target.room.bindMemory(to: UInt8.self)[..<n]),
                               charge: charge) { m, c in out.append(m); released += c }
                }
                inPlace += n
                position += n
            } else {
                try stream.withUnsafeBufferPointer { src in
                    try d.feed(UnsafeBufferPointer(rebasing: src[position..<(position + k)]), charge: charge) {
                        m, c in out.append(m); released += c
                    }
                }
                position += k
            }
        }
        #expect(out == messages)
        #expect(out.map(\.count) == sizes, "each message buffer is exactly its message")
        #expect(charged == released, "every charge is handed on with its message")
        #expect(!d.hasPartialMessage)
        #expect(inPlace > 1 << 20, "the random walk took the in-place path")
    }

    @Test func receiveRoomRefusedByTheBudgetLeavesFeedToReport() throws {
        var d = MessageDeframer(maxMessageSize: 8 << 20)
        let length = 4 << 20
        var granted = 0
        let charge: (Int) -> Bool = { bytes in
            guard granted + bytes <= 1 << 20 else { return false }
            granted += bytes
            return true
        }
        var chunk = grpcPrefix(length: length) + [UInt8](repeating: 7, count: 64 << 10)
        try chunk.withUnsafeBufferPointer { try d.feed($0, charge: charge) { _, _ in Issue.record("no message") } }
        #expect(granted == 64 << 10)
        #expect(d.receiveRoom(charge: charge) == nil, "the full-size step (4 MiB) is over the 1 MiB budget")
        chunk = [7]
        #expect(throws: GRPCWireError.self) {
            try chunk.withUnsafeBufferPointer { try d.feed($0, charge: charge) { _, _ in } }
        }
    }

    @Test(arguments: [false, true])
    func grpcioLargeMessagesLandInPlace(tls: Bool) async throws {
        let server = try TestSupport.startServer(tls: tls)
        var args = [
            TestSupport.fixtures.appendingPathComponent("interop_client.py").path, String(server.port),
            "--cases", "bulk_client_streaming",
        ]
        if tls { args += ["--tls", TestSupport.certificates.ca, "localhost"] }
        let (code, output) = try await TestSupport.run(
            TestSupport.python, args, directory: TestSupport.fixtures, timeout: .seconds(120))
        let received = server.receivedBytes
        await server.shutdown(gracePeriod: .seconds(1))
        #expect(code == 0, "\(output)")
        #expect(received.total >= 24 << 20)
        #expect(
            Double(received.inPlace) >= 0.9 * Double(received.total),
            "in place: \(received.inPlace) of \(received.total) bytes")
    }

    @Test func ourClientsLargeMessagesLandInPlace() async throws {
        let server = try TestSupport.startServer(tls: false)
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let call = channel.makeCall(path: InteropTestService.streamingInputCall, timeout: .seconds(60))
        let body = [UInt8](repeating: 1, count: 1 << 20)
        for _ in 0..<24 { try await call.send(StreamingInput.encodeRequest(payload: body[...])) }
        call.finishSending()
        let response = try await call.receive()
        let size = try StreamingInput.decodeResponse((response ?? [])[...])
        channel.close()
        let received = server.receivedBytes
        await server.shutdown(gracePeriod: .seconds(1))
        #expect(size == 24 << 20)
        #expect(
            Double(received.inPlace) >= 0.9 * Double(received.total),
            "in place: \(received.inPlace) of \(received.total) bytes")
    }
}

/// A seeded generator (SplitMix64), so a failing random walk repeats.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9e37_79b9_7f4a_7c15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
