import Foundation
import Testing

@testable import GRPCWire

/// The receive window is sized for throughput (issue 13: an 8 MiB stream window let a client send 4 MiB per
/// WINDOW_UPDATE round trip), while what a peer makes the server hold stays counted and bounded.
@Suite struct FlowControlWindowTests {
    @Test func serverAnnouncesThirtyTwoMiBStreamsAndRaisesTheConnectionWindow() async throws {
        let server = try ServerBehaviourTests.server(Probe())
        let raw = try RawConnection(port: server.port)
        let found = await offThePool { () -> (UInt32?, UInt32?) in
            var initialWindow: UInt32?
            var connectionIncrement: UInt32?
            _ = raw.readFrames { type, flags, stream, payload in
                if type == 0x4, flags & 0x1 == 0, stream == 0 {
                    var at = 0
                    while at + 6 <= payload.count {
                        let id = UInt16(payload[at]) << 8 | UInt16(payload[at + 1])
                        let value = payload[(at + 2)..<(at + 6)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                        if id == 0x4 { initialWindow = value }
                        at += 6
                    }
                }
                if type == 0x8, stream == 0, payload.count == 4 {
                    connectionIncrement = payload.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7FFF_FFFF
                }
                return initialWindow != nil && connectionIncrement != nil
            }
            return (initialWindow, connectionIncrement)
        }
        let expectedWindow: UInt32 = 32 << 20
        let expectedIncrement: UInt32 = (256 << 20) - 65535
        #expect(found.0 == expectedWindow, "SETTINGS_INITIAL_WINDOW_SIZE")
        #expect(found.1 == expectedIncrement, "connection WINDOW_UPDATE")
        raw.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// A handler that stops taking messages (it echoes into a client that reads nothing): the client may get
    /// well beyond 16 MiB in (the old window plus the old receive buffer), yet what the stream holds is bounded by
    /// the receive buffer limit, the window and one message, and all of it is counted.
    @Test func stalledHandlerLetsTheWindowFillAndHoldsABoundedAmount() async throws {
        let server = try ServerBehaviourTests.server(Probe())
        let raw = try RawConnection(port: server.port)
        raw.handshake()
        raw.request(stream: 1, path: ServerBehaviourTests.holdPath)
        let messages = 40
        let message = RawConnection.grpcPrefix(1 << 20) + [UInt8](repeating: 7, count: 1 << 20)
        await offThePool {
            for _ in 0..<messages { raw.data(stream: 1, message) }
        }
        // Without a 32 MiB window nghttp2 would end the connection with FLOW_CONTROL_ERROR and release everything.
        let held = await ServerBehaviourTests.waitUntil { server.bufferedRequestBytes >= 30 << 20 }
        #expect(held, "only \(server.bufferedRequestBytes) bytes held of \(messages) MiB sent")
        let bound = (16 << 20) + (32 << 20) + (1 << 20) + 64 << 10
        #expect(server.bufferedRequestBytes <= bound, "\(server.bufferedRequestBytes) bytes held")
        raw.close()
        #expect(
            await ServerBehaviourTests.waitUntil { server.bufferedRequestBytes == 0 },
            "closing returns it all (\(server.bufferedRequestBytes) bytes still charged)")
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
