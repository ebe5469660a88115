public import FlightProto

/// `grpc.testing.EchoStatus`.
public struct EchoStatus: Sendable, Equatable {
    /// Status code to answer with.
    public var code: Int32 = 0
    /// Status message to answer with.
    public var message = ""

    /// Creates a status request.
    public init(code: Int32 = 0, message: String = "") {
        self.code = code
        self.message = message
    }

    static func decode(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> EchoStatus {
        var r = ProtoReader(bytes)
        var s = EchoStatus()
        while let k = try r.nextField() {
            switch k.number {
            case 1: s.code = try r.readInt32(k)
            case 2: s.message = try r.readString(k)
            default: try r.skip(k)
            }
        }
        return s
    }

    func encode(into w: inout ProtoWriter, field: Int) {
        w.writeMessage(field: field) { m in
            if self.code != 0 { m.writeInt32(field: 1, self.code) }
            if !self.message.isEmpty { m.writeString(field: 2, self.message) }
        }
    }
}

/// Reads `Payload.body` (field 2) out of a `Payload` message, as a slice (no copy).
func decodePayloadBody(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> ArraySlice<UInt8> {
    var r = ProtoReader(bytes)
    var body: ArraySlice<UInt8> = []
    while let k = try r.nextField() {
        if k.number == 2 { body = try r.readBytes(k) } else { try r.skip(k) }
    }
    return body
}

/// Encodes a `Payload` whose body is `size` zero bytes: returns the header bytes; the body is sent separately.
func payloadHeader(outerField: Int, size: Int) -> [UInt8] {
    // Payload { body = 2 } inside field `outerField`.
    let inner = ProtoWriter.lengthDelimitedHeader(field: 2, length: size)
    return ProtoWriter.lengthDelimitedHeader(field: outerField, length: inner.count + size) + inner
}

/// `grpc.testing.SimpleRequest` (fields the interop cases use).
public struct SimpleRequest: Sendable {
    /// Size of the payload to return.
    public var responseSize: Int32 = 0
    /// Request payload body.
    public var payload: ArraySlice<UInt8> = []
    /// Status the server must answer with.
    public var responseStatus: EchoStatus?

    /// Creates a request.
    public init(responseSize: Int32 = 0, payload: ArraySlice<UInt8> = [], responseStatus: EchoStatus? = nil) {
        self.responseSize = responseSize
        self.payload = payload
        self.responseStatus = responseStatus
    }

    /// Decodes a request.
    /// - Throws: `FlightProtoError` for malformed bytes.
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> SimpleRequest {
        var r = ProtoReader(bytes)
        var s = SimpleRequest()
        while let k = try r.nextField() {
            switch k.number {
            case 2: s.responseSize = try r.readInt32(k)
            case 3: s.payload = try decodePayloadBody(try r.readBytes(k))
            case 7: s.responseStatus = try EchoStatus.decode(try r.readBytes(k))
            default: try r.skip(k)
            }
        }
        return s
    }

    /// Encodes as byte slices: a header and the payload body passed through without copying.
    public func encode() -> [ArraySlice<UInt8>] {
        var w = ProtoWriter()
        if self.responseSize != 0 { w.writeInt32(field: 2, self.responseSize) }
        if let status = self.responseStatus { status.encode(into: &w, field: 7) }
        guard !self.payload.isEmpty else { return [w.bytes[...]] }
        return [(w.bytes + payloadHeader(outerField: 3, size: self.payload.count))[...], self.payload]
    }
}

/// `grpc.testing.ResponseParameters`.
public struct ResponseParameters: Sendable {
    /// Response payload size.
    public var size: Int32
    /// Delay before sending, microseconds.
    public var intervalMicroseconds: Int32

    /// Creates parameters.
    public init(size: Int32, intervalMicroseconds: Int32 = 0) {
        self.size = size
        self.intervalMicroseconds = intervalMicroseconds
    }
}

/// `grpc.testing.StreamingOutputCallRequest`.
public struct StreamingOutputCallRequest: Sendable {
    /// One response per entry.
    public var responseParameters: [ResponseParameters] = []
    /// Request payload body.
    public var payload: ArraySlice<UInt8> = []
    /// Status the server must answer with.
    public var responseStatus: EchoStatus?

    /// Creates a request.
    public init(
        responseParameters: [ResponseParameters] = [], payload: ArraySlice<UInt8> = [],
        responseStatus: EchoStatus? = nil
    ) {
        self.responseParameters = responseParameters
        self.payload = payload
        self.responseStatus = responseStatus
    }

    /// Decodes a request.
    /// - Throws: `FlightProtoError` for malformed bytes.
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> StreamingOutputCallRequest {
        var r = ProtoReader(bytes)
        var s = StreamingOutputCallRequest()
        while let k = try r.nextField() {
            switch k.number {
            case 2:
                var inner = ProtoReader(try r.readBytes(k))
                var p = ResponseParameters(size: 0)
                while let ik = try inner.nextField() {
                    switch ik.number {
                    case 1: p.size = try inner.readInt32(ik)
                    case 2: p.intervalMicroseconds = try inner.readInt32(ik)
                    default: try inner.skip(ik)
                    }
                }
                s.responseParameters.append(p)
            case 3: s.payload = try decodePayloadBody(try r.readBytes(k))
            case 7: s.responseStatus = try EchoStatus.decode(try r.readBytes(k))
            default: try r.skip(k)
            }
        }
        return s
    }

    /// Encodes as byte slices (the payload body passed through).
    public func encode() -> [ArraySlice<UInt8>] {
        var w = ProtoWriter()
        for p in self.responseParameters {
            w.writeMessage(field: 2) { m in
                if p.size != 0 { m.writeInt32(field: 1, p.size) }
                if p.intervalMicroseconds != 0 { m.writeInt32(field: 2, p.intervalMicroseconds) }
            }
        }
        if let status = self.responseStatus { status.encode(into: &w, field: 7) }
        guard !self.payload.isEmpty else { return [w.bytes[...]] }
        return [(w.bytes + payloadHeader(outerField: 3, size: self.payload.count))[...], self.payload]
    }
}

/// Responses that carry only `payload = 1` (SimpleResponse, StreamingOutputCallResponse).
public enum PayloadResponse {
    /// Encodes a response with `size` zero bytes of payload, sharing `zeros` storage (no copy).
    public static func encode(size: Int, zeros: [UInt8]) -> [ArraySlice<UInt8>] {
        let header = payloadHeader(outerField: 1, size: size)
        if size == 0 { return [header[...]] }
        return [header[...], zeros[0..<size]]
    }

    /// Returns the payload body of a response.
    /// - Throws: `FlightProtoError` for malformed bytes.
    public static func decodeBody(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> ArraySlice<UInt8> {
        var r = ProtoReader(bytes)
        var body: ArraySlice<UInt8> = []
        while let k = try r.nextField() {
            if k.number == 1 { body = try decodePayloadBody(try r.readBytes(k)) } else { try r.skip(k) }
        }
        return body
    }
}

/// `grpc.testing.StreamingInputCallRequest` / `StreamingInputCallResponse`.
public enum StreamingInput {
    /// Encodes a request with `payload`.
    public static func encodeRequest(payload: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        [payloadHeader(outerField: 1, size: payload.count)[...], payload]
    }

    /// Payload size of a request.
    /// - Throws: `FlightProtoError` for malformed bytes.
    public static func decodeRequestSize(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> Int {
        var r = ProtoReader(bytes)
        var size = 0
        while let k = try r.nextField() {
            if k.number == 1 { size = try decodePayloadBody(try r.readBytes(k)).count } else { try r.skip(k) }
        }
        return size
    }

    /// Encodes the response.
    public static func encodeResponse(aggregatedSize: Int32) -> [UInt8] {
        var w = ProtoWriter()
        if aggregatedSize != 0 { w.writeInt32(field: 1, aggregatedSize) }
        return w.bytes
    }

    /// Decodes the response.
    /// - Throws: `FlightProtoError` for malformed bytes.
    public static func decodeResponse(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> Int32 {
        var r = ProtoReader(bytes)
        var size: Int32 = 0
        while let k = try r.nextField() {
            if k.number == 1 { size = try r.readInt32(k) } else { try r.skip(k) }
        }
        return size
    }
}
