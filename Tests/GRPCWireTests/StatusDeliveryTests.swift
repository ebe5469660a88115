import Foundation
import Synchronization
import Testing

@testable import GRPCWire

/// Statuses always reach the client: `grpc-message` is capped, oversized trailing metadata is dropped, and a status
/// that cannot be sent resets the stream.
@Suite(.serialized) struct StatusDeliveryTests {
    static let hugeErrorPath = "/test.Status/HugeError"
    static let hugeTrailersPath = "/test.Status/HugeTrailers"
    static let echoingErrorPath = "/test.Status/EchoingError"

    static func server() throws -> GRPCServer {
        var router = GRPCRouter()
        router.unary(Self.hugeErrorPath) { _, _ in
            throw GRPCStatus(.notFound, "no batch '" + String(repeating: "é", count: 100_000) + "'")
        }
        router.unary(Self.hugeTrailersPath) { call, _ in
            var trailers = GRPCMetadata()
            for i in 0..<40 { trailers.add("x-big-\(i)", String(repeating: "v", count: 1000)) }
            call.setTrailingMetadata(trailers)
            throw GRPCStatus(.invalidArgument, "bad request")
        }
        // Quotes the whole request in its error, as handlers that echo client input do.
        router.unary(Self.echoingErrorPath) { _, request in
            throw GRPCStatus(.invalidArgument, "unknown action '\(String(decoding: request, as: UTF8.self))'")
        }
        var config = GRPCServerConfiguration(host: "127.0.0.1", port: 0)
        config.eventLoopCount = 1
        return try GRPCServer(configuration: config, router: router)
    }

    /// Runs a process; `TestSupport.run` waits off the cooperative pool.
    static func runOffThePool(_ executable: String, _ arguments: [String]) async throws -> (Int32, String) {
        try await TestSupport.run(executable, arguments, timeout: .seconds(60))
    }

    @Test func encodingCapsTheMessageAtACharacterBoundary() {
        for text in [
            String(repeating: "a", count: 10_000), String(repeating: "é", count: 10_000),
            String(repeating: "%", count: 10_000), String(repeating: "日本", count: 5_000) + "x",
        ] {
            let encoded = GRPCMessageEncoding.encode(text)
            #expect(encoded.utf8.count <= GRPCMessageEncoding.maxEncodedLength)
            #expect(encoded.hasSuffix(GRPCMessageEncoding.truncationMarker))
            let decoded = GRPCMessageEncoding.decode(Array(encoded.utf8))
            let kept = String(decoded.dropLast(GRPCMessageEncoding.truncationMarker.count))
            #expect(text.hasPrefix(kept), "the cut falls between characters")
            #expect(!kept.isEmpty)
        }
        let short = "short message with % and é"
        #expect(GRPCMessageEncoding.decode(Array(GRPCMessageEncoding.encode(short).utf8)) == short)
        let exact = String(repeating: "b", count: GRPCMessageEncoding.maxEncodedLength)
        #expect(GRPCMessageEncoding.encode(exact) == exact, "a message that fits is never cut")
    }

    @Test func statusHeadersFitTheLimitAndKeepTheStatus() {
        var metadata = GRPCMetadata()
        for i in 0..<100 { metadata.add("x-m-\(i)", String(repeating: "m", count: 500)) }
        let headers = ServerConnection.statusHeaders(
            GRPCStatus(.internal, String(repeating: "z", count: 50_000)), metadata, limit: 8 << 10)
        let size = headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 32 }
        #expect(size <= 8 << 10)
        #expect(headers.first?.0 == "grpc-status" && headers.first?.1 == "13")
        #expect(headers.contains { $0.0 == "grpc-message" })
    }

    @Test func hugeErrorMessageArrivesCapped() async throws {
        let server = try Self.server()
        let channel = try TestSupport.channel(port: server.port, tls: false)
        do {
            _ = try await channel.unary(path: Self.hugeErrorPath, request: [[][...]], timeout: .seconds(20))
            Issue.record("the call succeeded")
        } catch {
            #expect(error.code == .notFound, "\(error)")
            #expect(error.message.hasPrefix("no batch 'éé"))
            #expect(error.message.hasSuffix(GRPCMessageEncoding.truncationMarker))
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func oversizedTrailingMetadataIsDroppedNotTheStatus() async throws {
        let server = try Self.server()
        let channel = try TestSupport.channel(port: server.port, tls: false)
        do {
            _ = try await channel.unary(path: Self.hugeTrailersPath, request: [[][...]], timeout: .seconds(20))
            Issue.record("the call succeeded")
        } catch {
            #expect(error.code == .invalidArgument, "\(error)")
            #expect(error.message == "bad request")
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// The defect: over 16 KiB, grpc-core clients reported "metadata size exceeds hard limit" (or waited for their
    /// deadline) instead of the error. grpcio is the reference client here.
    @Test func grpcioClientGetsTheErrorOfAHugeEchoedRequest() async throws {
        let server = try Self.server()
        let script = """
            import grpc, sys
            ch = grpc.insecure_channel('127.0.0.1:\(server.port)')
            out = []
            for path, body in (('\(Self.echoingErrorPath)', b'k' * 200000), ('\(Self.hugeErrorPath)', b'')):
                call = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
                try:
                    call(body, timeout=20)
                    out.append('OK')
                except grpc.RpcError as e:
                    out.append('%s %d %s' % (e.code().name, len(e.details() or ''), (e.details() or '')[:16]))
            print('|'.join(out))
            """
        let (status, output) = try await Self.runOffThePool(TestSupport.python, ["-c", script])
        #expect(status == 0, "\(output)")
        let parts = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map(String.init)
        #expect(parts.count == 2, "\(output)")
        if parts.count == 2 {
            #expect(parts[0].hasPrefix("INVALID_ARGUMENT "), "\(parts[0])")
            #expect(parts[0].hasSuffix("unknown action '"), "\(parts[0])")
            #expect(parts[1].hasPrefix("NOT_FOUND "), "\(parts[1])")
            let length = Int(parts[0].split(separator: " ")[1]) ?? .max
            #expect(length <= GRPCMessageEncoding.maxEncodedLength, "\(parts[0])")
        }
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// A peer that floods SETTINGS (each needs an ACK) is answered GOAWAY(ENHANCE_YOUR_CALM), not PROTOCOL_ERROR;
    /// other connections are served.
    @Test func settingsFloodIsAnsweredWithEnhanceYourCalm() async throws {
        let server = try Self.server()
        let raw = try RawConnection(port: server.port)
        raw.handshake()
        let one = RawConnection.frame(type: 0x4, flags: 0, stream: 0, [])
        raw.send(Array([[UInt8]](repeating: one, count: 20_000).joined()))
        var code: UInt32?
        _ = raw.readFrames { type, _, _, payload in
            guard type == 0x7, payload.count >= 8 else { return false }
            code = UInt32(payload[4]) << 24 | UInt32(payload[5]) << 16 | UInt32(payload[6]) << 8 | UInt32(payload[7])
            return true
        }
        #expect(code == 0xB, "GOAWAY(ENHANCE_YOUR_CALM) for a SETTINGS flood")
        raw.close()
        let channel = try TestSupport.channel(port: server.port, tls: false)
        do {
            _ = try await channel.unary(path: Self.hugeTrailersPath, request: [[][...]], timeout: .seconds(20))
        } catch {
            #expect(error.code == .invalidArgument, "\(error)")
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
