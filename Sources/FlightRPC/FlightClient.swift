public import ArrowIPC
public import FlightProto
public import GRPCWire
internal import Synchronization

/// A Flight location: `grpc://HOST:PORT`, `grpc+tcp://…` or `grpc+tls://…`.
public struct FlightLocation: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: Int
    public let tls: Bool

    /// - Throws: ``FlightRPCError/invalidArgument(_:)`` for other schemes or a missing port.
    public init(parsing uri: String) throws(FlightRPCError) {
        let tls = uri.hasPrefix("grpc+tls://")
        guard tls || uri.hasPrefix("grpc://") || uri.hasPrefix("grpc+tcp://"), let address = HostPort(argument: uri),
              address.port > 0
        else {
            throw .invalidArgument("'\(uri)' is not a Flight location (grpc://HOST:PORT or grpc+tls://HOST:PORT)")
        }
        self.host = address.host
        self.port = address.port
        self.tls = tls
    }

    public var description: String { "\(self.tls ? "grpc+tls" : "grpc")://\(HostPort(host: self.host, port: self.port))" }
}

/// An Arrow Flight client over one multiplexed gRPC connection: every RPC as an async call, DoPut and
/// DoExchange that send IPC messages without copying their bodies, Basic→bearer authentication, custom headers.
///
/// Every call throws ``GRPCStatus`` with the server's code and message (or UNAVAILABLE when the server
/// cannot be reached), and ``FlightProtoError`` / `ArrowIPCError` for malformed answers.
public final class FlightClient: Sendable {
    public let location: FlightLocation
    private let channel: GRPCChannel
    private let headers: Mutex<GRPCMetadata>

    /// Connects lazily to `location`.
    ///
    /// - Parameters:
    ///   - trustRoots: PEM file of the CAs that sign the server's certificate (grpc+tls; nil: the system trust store).
    ///   - headers: metadata sent with every call.
    public init(location: FlightLocation, trustRoots: String? = nil, serverName: String? = nil,
                headers: GRPCMetadata = GRPCMetadata()) throws {
        var tls: TLSConfiguration?
        if location.tls {
            // Without a CA file: OpenSSL's default trust store (the system's; SSL_CERT_FILE / SSL_CERT_DIR move it).
            tls = .client(trustRoots: trustRoots, serverName: serverName)
        }
        var configuration = GRPCClientConfiguration(host: location.host, port: location.port, tls: tls)
        configuration.maxReceiveMessageSize = Int(Int32.max)
        self.location = location
        self.channel = try GRPCChannel(configuration: configuration)
        self.headers = Mutex(headers)
    }

    /// Closes the connection.
    public func close() {
        self.channel.close()
    }

    private func path(_ method: String) -> String { FlightServer.servicePath + method }

    private var callHeaders: GRPCMetadata { self.headers.withLock { $0 } }

    private func unary<Response: ProtoMessage>(_ method: String, _ request: some ProtoMessage,
                                               timeout: Duration? = nil) async throws -> Response {
        let bytes = try await self.channel.unary(path: self.path(method), request: [request.serializedBytes()[...]],
                                                 metadata: self.callHeaders, timeout: timeout)
        return try Response(serializedBytes: bytes[...])
    }

    private func serverStream<Response: ProtoMessage>(_ method: String, _ request: some ProtoMessage) async throws -> [Response] {
        let call = self.channel.makeCall(path: self.path(method), metadata: self.callHeaders)
        try await call.send([request.serializedBytes()[...]], last: true)
        var responses: [Response] = []
        while let bytes = try await call.receive() { responses.append(try Response(serializedBytes: bytes[...])) }
        return responses
    }

    // MARK: Authentication

    /// Authenticates with HTTP Basic credentials in the Handshake headers (what pyarrow's
    /// `authenticate_basic_token` does) and sends the returned bearer token with every later call.
    ///
    /// - Returns: the token.
    /// - Throws: UNAUTHENTICATED for wrong credentials; INTERNAL if the server returned no bearer token.
    @discardableResult
    public func authenticateBasic(username: String, password: String) async throws -> String {
        var metadata = self.callHeaders
        let credentials = Base64.encode(Array("\(username):\(password)".utf8))
        metadata.add("authorization", "Basic " + credentials + String(repeating: "=", count: (4 - credentials.count % 4) % 4))
        let call = self.channel.makeCall(path: self.path("Handshake"), metadata: metadata)
        call.finishSending()
        while try await call.receive() != nil {}
        let initial = await call.initialMetadata()
        let trailing = await call.trailingMetadata()
        guard let header = initial["authorization"] ?? trailing["authorization"], header.hasPrefix("Bearer ") else {
            throw GRPCStatus(.internal, "the server's Handshake returned no bearer token")
        }
        self.headers.withLock { $0.add("authorization", header) }
        return String(header.dropFirst(7))
    }

    /// A raw Handshake: sends `requests`, returns the responses.
    public func handshake(_ requests: [HandshakeMessage]) async throws -> [HandshakeMessage] {
        let call = self.channel.makeCall(path: self.path("Handshake"), metadata: self.callHeaders)
        for request in requests { try await call.send(request.serializedBytes()) }
        call.finishSending()
        var responses: [HandshakeMessage] = []
        while let bytes = try await call.receive() { responses.append(try HandshakeMessage(serializedBytes: bytes[...])) }
        return responses
    }

    // MARK: Metadata RPCs

    public func listFlights(criteria: [UInt8] = []) async throws -> [FlightInfo] {
        try await self.serverStream("ListFlights", Criteria(criteria))
    }

    public func getFlightInfo(_ descriptor: FlightDescriptor) async throws -> FlightInfo {
        try await self.unary("GetFlightInfo", descriptor)
    }

    public func pollFlightInfo(_ descriptor: FlightDescriptor) async throws -> PollInfo {
        try await self.unary("PollFlightInfo", descriptor)
    }

    /// The schema of a flight, decoded from the encapsulated IPC message in `SchemaResult`.
    public func getSchema(_ descriptor: FlightDescriptor) async throws -> Schema {
        let result: SchemaResult = try await self.unary("GetSchema", descriptor)
        return try Self.decodeSchema(result.value)
    }

    /// Decodes an encapsulated IPC Schema message (FlightInfo.schema, SchemaResult.schema).
    public static func decodeSchema(_ bytes: ArraySlice<UInt8>) throws -> Schema {
        var messages = try IPCMessageIterator(bytes)
        guard let message = try messages.next(), case let .schema(schema) = message.message.header else {
            throw ArrowIPCError.invalidMessage(what: "FlightInfo schema", reason: "not an IPC Schema message")
        }
        return schema
    }

    public func doAction(_ action: FlightAction) async throws -> [FlightResult] {
        try await self.serverStream("DoAction", action)
    }

    public func listActions() async throws -> [ActionType] {
        try await self.serverStream("ListActions", ProtoEmpty())
    }

    // MARK: Data

    /// Starts a DoGet; read the stream with ``FlightDataReader/next()``.
    public func doGet(_ ticket: Ticket) async throws -> FlightDataReader {
        let call = self.channel.makeCall(path: self.path("DoGet"), metadata: self.callHeaders)
        try await call.send([ticket.serializedBytes()[...]], last: true)
        return FlightDataReader(call: call)
    }

    /// Starts a DoPut of `descriptor`; send IPC messages with the writer, then ``FlightPutWriter/finish()``.
    ///
    /// - Parameter metadata: headers for this call only, sent after the client's own.
    public func doPut(_ descriptor: FlightDescriptor, metadata: GRPCMetadata = GRPCMetadata()) -> FlightPutWriter {
        var headers = self.callHeaders
        for entry in metadata {
            switch entry.value {
            case let .string(text): headers.add(entry.name, text)
            case let .binary(bytes): headers.add(entry.name, binary: bytes)
            }
        }
        return FlightPutWriter(call: self.channel.makeCall(path: self.path("DoPut"), metadata: headers), descriptor: descriptor)
    }

    /// Starts a DoExchange of `descriptor`: send with the writer, read with the reader.
    public func doExchange(_ descriptor: FlightDescriptor) -> (FlightPutWriter, FlightDataReader) {
        let call = self.channel.makeCall(path: self.path("DoExchange"), metadata: self.callHeaders)
        return (FlightPutWriter(call: call, descriptor: descriptor), FlightDataReader(call: call))
    }

    /// Puts a whole IPC stream or file (its messages forwarded as they are, bodies not copied).
    ///
    /// - Returns: the server's PutResult messages.
    public func put(_ descriptor: FlightDescriptor, ipc bytes: ArraySlice<UInt8>,
                    progress: (@Sendable (Int) -> Void)? = nil) async throws -> [PutResult] {
        var messages = try IPCMessageIterator(bytes)
        let writer = self.doPut(descriptor)
        var sent = 0
        do {
            while let message = try messages.next() {
                try await writer.send(message)
                sent += message.metadata.count + message.body.count
                progress?(sent)
            }
        } catch {
            writer.cancel()
            throw error
        }
        return try await writer.finish()
    }
}

/// Sends IPC messages as FlightData on a DoPut or DoExchange; the first message carries the descriptor.
public final class FlightPutWriter: Sendable {
    let call: GRPCClientCall
    private let descriptor: Mutex<FlightDescriptor?>

    init(call: GRPCClientCall, descriptor: FlightDescriptor) {
        self.call = call
        self.descriptor = Mutex(descriptor)
    }

    /// Sends one IPC message (header + body view, body not copied).
    public func send(_ message: EncapsulatedMessage, appMetadata: [UInt8] = []) async throws {
        try await self.send(header: message.metadata, body: [message.body.bytes], bodyLength: message.body.count,
                            appMetadata: appMetadata)
    }

    /// Sends one encoded message (e.g. from ``EncodedMessage/recordBatch(length:columns:)``).
    public func send(_ message: EncodedMessage, appMetadata: [UInt8] = []) async throws {
        try await self.send(header: message.metadata[...], body: message.body, bodyLength: message.bodyLength,
                            appMetadata: appMetadata)
    }

    /// Sends one raw IPC message: a `Message` flatbuffer and its body slices (none of them copied).
    public func send(header: ArraySlice<UInt8>, body: [ArraySlice<UInt8>], bodyLength: Int, appMetadata: [UInt8] = []) async throws {
        let descriptor = self.descriptor.withLock { value in
            defer { value = nil }
            return value
        }
        try await self.call.send(FlightData.encodedParts(descriptor: descriptor, dataHeader: header, appMetadata: appMetadata,
                                                         body: body, bodyLength: bodyLength))
    }

    /// Sends the descriptor alone if no message carried it yet (a stream must start with it).
    private func sendPendingDescriptor() async throws {
        let descriptor = self.descriptor.withLock { value in
            defer { value = nil }
            return value
        }
        guard let descriptor else { return }
        try await self.call.send(FlightData.encodedParts(descriptor: descriptor, dataHeader: [UInt8](), body: [], bodyLength: 0))
    }

    /// Ends the upload and returns the server's PutResults (for DoPut).
    public func finish() async throws -> [PutResult] {
        try await self.sendPendingDescriptor()
        self.call.finishSending()
        var results: [PutResult] = []
        while let bytes = try await self.call.receive() { results.append(try PutResult(serializedBytes: bytes[...])) }
        return results
    }

    /// Ends the request stream (for DoExchange, whose responses come through the reader); the descriptor
    /// is sent first if no message carried it.
    public func finishSending() async throws {
        try await self.sendPendingDescriptor()
        self.call.finishSending()
    }

    /// Abandons the call (the server sees CANCELLED and keeps nothing).
    public func cancel() {
        self.call.cancel()
    }
}

/// Reads the FlightData of a DoGet or DoExchange and decodes the IPC messages (full validation).
public final class FlightDataReader: Sendable {
    let call: GRPCClientCall
    private let decoder = Mutex(IPCMessageDecoder(options: .untrusted))

    init(call: GRPCClientCall) {
        self.call = call
    }

    /// The next raw FlightData message, or nil at the end of the stream.
    public func nextData() async throws -> FlightData? {
        guard let bytes = try await self.call.receive() else { return nil }
        return try FlightData(serializedBytes: bytes[...])
    }

    /// The next record batch (schema and dictionary messages are applied on the way), or nil at the end.
    public func next() async throws -> RecordBatch? {
        while let data = try await self.nextData() {
            guard !data.dataHeader.isEmpty else { continue }
            let decoded = try self.decoder.withLock { decoder throws(ArrowIPCError) in
                try decoder.decode(header: data.dataHeader, body: data.dataBody)
            }
            if case let .recordBatch(batch) = decoded { return batch }
        }
        return nil
    }

    /// The schema, once the first message has been read.
    public var schema: Schema? { self.decoder.withLock { $0.schema } }

    /// Every remaining record batch.
    public func readAll() async throws -> [RecordBatch] {
        var batches: [RecordBatch] = []
        while let batch = try await self.next() { batches.append(batch) }
        return batches
    }

    /// Cancels the call.
    public func cancel() {
        self.call.cancel()
    }
}
