public import FlightProto
public import GRPCWire

/// What a Flight handler knows about its call.
public struct FlightCallContext: Sendable {
    /// The Flight method, e.g. `DoGet`.
    public let method: String
    /// Request headers.
    public let metadata: GRPCMetadata
    /// When the client's deadline expires (the handler is cancelled then).
    public let deadline: ContinuousClock.Instant?
    /// The user the call was authenticated as (nil when auth is off).
    public let identity: String?
}

/// Reads the request messages of a streaming call, decoded as `Message`. Bytes fields are slices of the
/// received message (the single receive copy); nothing else is copied.
public struct FlightRequestStream<Message: ProtoMessage>: Sendable {
    let call: GRPCServerCall

    /// The next message, or nil when the client finished sending.
    ///
    /// - Throws: ``GRPCStatus`` if the call ended abnormally, ``FlightProtoError`` for a malformed message.
    public func next() async throws -> Message? {
        guard let bytes = try await self.call.receive() else { return nil }
        return try Message(serializedBytes: bytes[...])
    }

    /// The next message and the size of the received bytes its fields are slices of, or nil at the end.
    ///
    /// - Throws: as ``next()``.
    public func nextWithSize() async throws -> (message: Message, size: Int)? {
        guard let bytes = try await self.call.receive() else { return nil }
        return (try Message(serializedBytes: bytes[...]), bytes.count)
    }
}

/// Sends the response messages of a streaming call.
public struct FlightResponseStream<Message: ProtoMessage>: Sendable {
    let call: GRPCServerCall

    /// Sends one message (suspends while the client is slow to read).
    public func send(_ message: Message) async throws {
        try await self.call.send(message.serializedBytes())
    }

    /// Sends one message given as encoded parts, e.g. ``FlightData/encodedParts(descriptor:dataHeader:appMetadata:body:bodyLength:)``
    /// whose body slices go to the socket without being copied.
    public func send(parts: [ArraySlice<UInt8>]) async throws {
        try await self.call.send(parts)
    }

    /// Sends response headers now (before any message). Handshake uses it for the bearer token.
    public func sendHeaders(_ metadata: GRPCMetadata) {
        self.call.sendInitialMetadata(metadata)
    }
}

/// An Arrow Flight service: implement the RPCs you serve; the others answer UNIMPLEMENTED.
///
/// Handlers throw ``GRPCStatus`` or any error; ``NodeError``, `ArrowIPCError` and `FlightProtoError` map to
/// the gRPC codes of the ValkeyFlight contract (CONTRACT.md) §2, anything else to INTERNAL.
public protocol FlightService: Sendable {
    func handshake(_ requests: FlightRequestStream<HandshakeMessage>, _ responses: FlightResponseStream<HandshakeMessage>,
                   _ context: FlightCallContext) async throws
    func listFlights(_ criteria: Criteria, _ responses: FlightResponseStream<FlightInfo>, _ context: FlightCallContext) async throws
    func getFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> FlightInfo
    func pollFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> PollInfo
    func getSchema(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> SchemaResult
    func doGet(_ ticket: Ticket, _ responses: FlightResponseStream<FlightData>, _ context: FlightCallContext) async throws
    func doPut(_ requests: FlightRequestStream<FlightData>, _ responses: FlightResponseStream<PutResult>,
               _ context: FlightCallContext) async throws
    func doExchange(_ requests: FlightRequestStream<FlightData>, _ responses: FlightResponseStream<FlightData>,
                    _ context: FlightCallContext) async throws
    func doAction(_ action: FlightAction, _ responses: FlightResponseStream<FlightResult>, _ context: FlightCallContext) async throws
    func listActions(_ responses: FlightResponseStream<ActionType>, _ context: FlightCallContext) async throws
}

extension FlightService {
    private func unimplemented(_ method: String) -> GRPCStatus {
        GRPCStatus(.unimplemented, "\(method) is not implemented by this server")
    }

    public func handshake(_ requests: FlightRequestStream<HandshakeMessage>, _ responses: FlightResponseStream<HandshakeMessage>,
                          _ context: FlightCallContext) async throws {
        throw self.unimplemented("Handshake")
    }
    public func listFlights(_ criteria: Criteria, _ responses: FlightResponseStream<FlightInfo>, _ context: FlightCallContext) async throws {
        throw self.unimplemented("ListFlights")
    }
    public func getFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> FlightInfo {
        throw self.unimplemented("GetFlightInfo")
    }
    public func pollFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> PollInfo {
        throw self.unimplemented("PollFlightInfo")
    }
    public func getSchema(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> SchemaResult {
        throw self.unimplemented("GetSchema")
    }
    public func doGet(_ ticket: Ticket, _ responses: FlightResponseStream<FlightData>, _ context: FlightCallContext) async throws {
        throw self.unimplemented("DoGet")
    }
    public func doPut(_ requests: FlightRequestStream<FlightData>, _ responses: FlightResponseStream<PutResult>,
                      _ context: FlightCallContext) async throws {
        throw self.unimplemented("DoPut")
    }
    public func doExchange(_ requests: FlightRequestStream<FlightData>, _ responses: FlightResponseStream<FlightData>,
                           _ context: FlightCallContext) async throws {
        throw self.unimplemented("DoExchange")
    }
    public func doAction(_ action: FlightAction, _ responses: FlightResponseStream<FlightResult>, _ context: FlightCallContext) async throws {
        throw self.unimplemented("DoAction")
    }
    public func listActions(_ responses: FlightResponseStream<ActionType>, _ context: FlightCallContext) async throws {
        throw self.unimplemented("ListActions")
    }
}
