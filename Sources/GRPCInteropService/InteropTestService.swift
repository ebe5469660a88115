import FlightProto
public import GRPCWire

/// `grpc.testing.TestService` for the interop cases, on GRPCWire and FlightProto.
public enum InteropTestService {
    /// Method paths.
    public static let emptyCall = "/grpc.testing.TestService/EmptyCall"
    /// Unary with payload and status echo.
    public static let unaryCall = "/grpc.testing.TestService/UnaryCall"
    /// Server streaming.
    public static let streamingOutputCall = "/grpc.testing.TestService/StreamingOutputCall"
    /// Client streaming.
    public static let streamingInputCall = "/grpc.testing.TestService/StreamingInputCall"
    /// Bidirectional.
    public static let fullDuplexCall = "/grpc.testing.TestService/FullDuplexCall"
    /// Declared but not implemented by servers.
    public static let unimplementedCall = "/grpc.testing.TestService/UnimplementedCall"
    /// A service no server implements.
    public static let unimplementedServiceCall = "/grpc.testing.UnimplementedService/UnimplementedCall"

    /// Shared zero bytes that response payloads slice (no per-response allocation).
    static let zeros = [UInt8](repeating: 0, count: 4 << 20)

    static func zeros(_ size: Int) -> [UInt8] {
        size <= Self.zeros.count ? Self.zeros : [UInt8](repeating: 0, count: size)
    }

    static func echoMetadata(_ call: GRPCServerCall) {
        let md = call.context.metadata
        if let initial = md["x-grpc-test-echo-initial"] {
            var out = GRPCMetadata()
            out.add("x-grpc-test-echo-initial", initial)
            call.sendInitialMetadata(out)
        }
        if let trailing = md.binary("x-grpc-test-echo-trailing-bin") {
            var out = GRPCMetadata()
            out.add("x-grpc-test-echo-trailing-bin", binary: trailing)
            call.setTrailingMetadata(out)
        }
    }

    static func check(_ status: EchoStatus?) throws(GRPCStatus) {
        guard let status, status.code != 0 else { return }
        throw GRPCStatus(GRPCStatus.Code(rawValue: Int(status.code)) ?? .unknown, status.message)
    }

    static func parse<T>(_ body: () throws(FlightProtoError) -> T) throws(GRPCStatus) -> T {
        do { return try body() } catch { throw GRPCStatus(.internal, "unparsable request: \(error)") }
    }

    /// The router serving TestService.
    public static func router() -> GRPCRouter {
        var router = GRPCRouter()
        router.unary(Self.emptyCall) { call, _ in
            Self.echoMetadata(call)
            return [[]]
        }
        router.unary(Self.unaryCall) { call, bytes in
            Self.echoMetadata(call)
            let request = try Self.parse { () throws(FlightProtoError) in try SimpleRequest.decode(bytes[...]) }
            try Self.check(request.responseStatus)
            let size = Int(max(0, request.responseSize))
            return PayloadResponse.encode(size: size, zeros: Self.zeros(size))
        }
        router.serverStreaming(Self.streamingOutputCall) { call, bytes in
            Self.echoMetadata(call)
            let request = try Self.parse { () throws(FlightProtoError) in
                try StreamingOutputCallRequest.decode(bytes[...])
            }
            try Self.check(request.responseStatus)
            for p in request.responseParameters {
                if p.intervalMicroseconds > 0 { try await Task.sleep(for: .microseconds(Int(p.intervalMicroseconds))) }
                let size = Int(max(0, p.size))
                try await call.send(PayloadResponse.encode(size: size, zeros: Self.zeros(size)))
            }
        }
        router.clientStreaming(Self.streamingInputCall) { call in
            Self.echoMetadata(call)
            var total = 0
            for try await message in call.requests {
                total += try Self.parse { () throws(FlightProtoError) in
                    try StreamingInput.decodeRequestSize(message[...])
                }
            }
            return [StreamingInput.encodeResponse(aggregatedSize: Int32(truncatingIfNeeded: total))[...]]
        }
        router.bidirectional(Self.fullDuplexCall) { call in
            Self.echoMetadata(call)
            for try await message in call.requests {
                let request = try Self.parse { () throws(FlightProtoError) in
                    try StreamingOutputCallRequest.decode(message[...])
                }
                try Self.check(request.responseStatus)
                for p in request.responseParameters {
                    if p.intervalMicroseconds > 0 {
                        try await Task.sleep(for: .microseconds(Int(p.intervalMicroseconds)))
                    }
                    let size = Int(max(0, p.size))
                    try await call.send(PayloadResponse.encode(size: size, zeros: Self.zeros(size)))
                }
            }
        }
        return router
    }
}
