import FlightProto
public import GRPCWire

/// A failed interop case.
public struct InteropFailure: Error, CustomStringConvertible {
    /// What went wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// grpc's standard interop cases (doc/interop-test-descriptions.md) run by our client.
public enum InteropClientCases {
    /// All cases, in the order the grpcio client script runs them.
    public static let all = [
        "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong", "empty_stream",
        "custom_metadata", "status_code_and_message", "special_status_message", "unimplemented_method",
        "unimplemented_service", "cancel_after_begin", "cancel_after_first_response", "timeout_on_sleeping_server",
        "very_large_request",
    ]

    static func check(_ condition: Bool, _ what: @autoclosure () -> String) throws(InteropFailure) {
        if !condition { throw InteropFailure(what()) }
    }

    static func zeros(_ n: Int) -> ArraySlice<UInt8> { [UInt8](repeating: 0, count: n)[...] }

    static func body(_ bytes: [UInt8]) throws(InteropFailure) -> ArraySlice<UInt8> {
        do { return try PayloadResponse.decodeBody(bytes[...]) } catch {
            throw InteropFailure("bad response: \(error)")
        }
    }

    static func rpc<T>(_ what: String, _ body: () async throws(GRPCStatus) -> T) async throws(InteropFailure) -> T {
        do { return try await body() } catch { throw InteropFailure("\(what) failed: \(error)") }
    }

    static func expectStatus(
        _ code: GRPCStatus.Code, message: String? = nil, _ body: () async throws(GRPCStatus) -> Void
    ) async throws(InteropFailure) {
        do {
            try await body()
        } catch {
            try check(error.code == code, "expected \(code), got \(error)")
            if let message {
                try check(
                    error.message == message, "message \(error.message.debugDescription) != \(message.debugDescription)"
                )
            }
            return
        }
        throw InteropFailure("expected \(code), the call succeeded")
    }

    /// Runs one case.
    /// - Throws: ``InteropFailure`` describing the first failed expectation.
    public static func run(_ name: String, channel: GRPCChannel) async throws(InteropFailure) {
        let t = InteropTestService.self
        switch name {
        case "empty_unary":
            let r = try await rpc("EmptyCall") { () async throws(GRPCStatus) in
                try await channel.unary(path: t.emptyCall, request: [], timeout: .seconds(30))
            }
            try check(r.isEmpty, "non-empty response")
        case "large_unary", "very_large_request":
            let (reqSize, respSize) = name == "large_unary" ? (271_828, 314_159) : (16 << 20, 10)
            let req = SimpleRequest(responseSize: Int32(respSize), payload: zeros(reqSize)).encode()
            let r = try await rpc("UnaryCall") { () async throws(GRPCStatus) in
                try await channel.unary(path: t.unaryCall, request: req, timeout: .seconds(60))
            }
            let b = try body(r)
            try check(b.count == respSize && b.allSatisfy { $0 == 0 }, "payload of \(b.count) bytes")
        case "client_streaming":
            let call = channel.makeCall(path: t.streamingInputCall, timeout: .seconds(30))
            for size in [27182, 8, 1828, 45904] {
                try await rpc("send") { () async throws(GRPCStatus) in
                    try await call.send(StreamingInput.encodeRequest(payload: zeros(size)))
                }
            }
            call.finishSending()
            let r = try await rpc("receive") { () async throws(GRPCStatus) in try await call.receive() }
            let size = try? StreamingInput.decodeResponse((r ?? [])[...])
            try check(size == 74922, "aggregated size \(String(describing: size))")
        case "server_streaming":
            let sizes: [Int32] = [31415, 9, 2653, 58979]
            let call = channel.makeCall(path: t.streamingOutputCall, timeout: .seconds(30))
            let req = StreamingOutputCallRequest(responseParameters: sizes.map { ResponseParameters(size: $0) })
                .encode()
            try await rpc("send") { () async throws(GRPCStatus) in try await call.send(req) }
            call.finishSending()
            var got: [Int] = []
            while let m = try await rpc("receive", { () async throws(GRPCStatus) in try await call.receive() }) {
                got.append(try body(m).count)
            }
            try check(got == sizes.map { Int($0) }, "sizes \(got)")
        case "ping_pong":
            let call = channel.makeCall(path: t.fullDuplexCall, timeout: .seconds(30))
            for (resp, req) in [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)] {
                let m = StreamingOutputCallRequest(
                    responseParameters: [ResponseParameters(size: Int32(resp))], payload: zeros(req)
                ).encode()
                try await rpc("send") { () async throws(GRPCStatus) in try await call.send(m) }
                let r = try await rpc("receive") { () async throws(GRPCStatus) in try await call.receive() }
                try check(try body(r ?? []).count == resp, "response size")
            }
            call.finishSending()
            let end = try await rpc("receive end") { () async throws(GRPCStatus) in try await call.receive() }
            try check(end == nil, "extra response")
            let status = await call.status()
            try check(status.code == .ok, "status \(status)")
        case "empty_stream":
            let call = channel.makeCall(path: t.fullDuplexCall, timeout: .seconds(30))
            call.finishSending()
            let r = try await rpc("receive") { () async throws(GRPCStatus) in try await call.receive() }
            try check(r == nil, "response on empty stream")
        case "custom_metadata":
            var md = GRPCMetadata()
            md.add("x-grpc-test-echo-initial", "test_initial_metadata_value")
            md.add("x-grpc-test-echo-trailing-bin", binary: [0xAB, 0xAB, 0xAB])
            for path in [t.unaryCall, t.fullDuplexCall] {
                let call = channel.makeCall(path: path, metadata: md, timeout: .seconds(30))
                let req: [ArraySlice<UInt8>] =
                    path == t.unaryCall
                    ? SimpleRequest(responseSize: 314_159, payload: zeros(271_828)).encode()
                    : StreamingOutputCallRequest(
                        responseParameters: [ResponseParameters(size: 314_159)], payload: zeros(271_828)
                    ).encode()
                try await rpc("send") { () async throws(GRPCStatus) in try await call.send(req) }
                call.finishSending()
                let r = try await rpc("receive") { () async throws(GRPCStatus) in try await call.receive() }
                try check(try body(r ?? []).count == 314_159, "payload")
                let initial = await call.initialMetadata()
                let trailing = await call.trailingMetadata()
                try check(initial["x-grpc-test-echo-initial"] == "test_initial_metadata_value", "initial \(initial)")
                try check(
                    trailing.binary("x-grpc-test-echo-trailing-bin") == [0xAB, 0xAB, 0xAB], "trailing \(trailing)")
            }
        case "status_code_and_message", "special_status_message":
            let message =
                name == "status_code_and_message"
                ? "test status message"
                : "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n"
            let status = EchoStatus(code: 2, message: message)
            try await expectStatus(.unknown, message: message) { () async throws(GRPCStatus) in
                _ = try await channel.unary(
                    path: t.unaryCall, request: SimpleRequest(responseStatus: status).encode(), timeout: .seconds(30))
            }
            try await expectStatus(.unknown, message: message) { () async throws(GRPCStatus) in
                let call = channel.makeCall(path: t.fullDuplexCall, timeout: .seconds(30))
                try await call.send(StreamingOutputCallRequest(responseStatus: status).encode())
                call.finishSending()
                while try await call.receive() != nil {}
            }
        case "unimplemented_method", "unimplemented_service":
            let path = name == "unimplemented_method" ? t.unimplementedCall : t.unimplementedServiceCall
            try await expectStatus(.unimplemented) { () async throws(GRPCStatus) in
                _ = try await channel.unary(path: path, request: [], timeout: .seconds(30))
            }
        case "cancel_after_begin":
            let call = channel.makeCall(path: t.streamingInputCall, timeout: .seconds(30))
            call.cancel()
            let status = await call.status()
            try check(status.code == .cancelled, "status \(status)")
        case "cancel_after_first_response":
            let call = channel.makeCall(path: t.fullDuplexCall, timeout: .seconds(30))
            let m = StreamingOutputCallRequest(
                responseParameters: [ResponseParameters(size: 31415)], payload: zeros(27182)
            ).encode()
            try await rpc("send") { () async throws(GRPCStatus) in try await call.send(m) }
            let r = try await rpc("receive") { () async throws(GRPCStatus) in try await call.receive() }
            try check(try body(r ?? []).count == 31415, "first response")
            call.cancel()
            let status = await call.status()
            try check(status.code == .cancelled, "status \(status)")
        case "timeout_on_sleeping_server":
            let call = channel.makeCall(path: t.fullDuplexCall, timeout: .milliseconds(1))
            try await expectStatus(.deadlineExceeded) { () async throws(GRPCStatus) in
                try await call.send(StreamingOutputCallRequest(payload: zeros(27182)).encode())
                while try await call.receive() != nil {}
            }
        default:
            throw InteropFailure("unknown case \(name)")
        }
    }
}
