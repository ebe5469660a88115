internal import FlightProto
public import GRPCWire

/// Serves a ``FlightService`` over gRPC (`/arrow.flight.protocol.FlightService/<Method>`), with optional
/// Basic→bearer authentication and middleware.
public final class FlightServer: Sendable {
    public static let servicePath = "/arrow.flight.protocol.FlightService/"
    private let server: GRPCServer

    /// Starts listening.
    ///
    /// - Throws: ``GRPCWireError`` if the address cannot be bound or TLS files cannot be loaded.
    public init(service: any FlightService, configuration: GRPCServerConfiguration, auth: FlightBasicAuth? = nil,
                middleware: [any FlightServerMiddleware] = [], observer: (any FlightCallObserver)? = nil)
        throws(GRPCWireError)
    {
        var router = GRPCRouter()
        let hooks = FlightCallHooks(auth: auth, middleware: middleware, observer: observer)
        router.bidirectional(Self.servicePath + "Handshake") { call in
            try await hooks.run(call, "Handshake", authenticate: false) { context, headers in
                if let auth {
                    try await auth.handshake(call, extraHeaders: headers)
                } else {
                    try await service.handshake(FlightRequestStream(call: call), FlightResponseStream(call: call), context)
                }
            }
        }
        router.serverStreaming(Self.servicePath + "ListFlights") { call, request in
            try await hooks.run(call, "ListFlights") { context, _ in
                try await service.listFlights(try Criteria(serializedBytes: request[...]), FlightResponseStream(call: call), context)
            }
        }
        router.unary(Self.servicePath + "GetFlightInfo") { call, request in
            try await hooks.unary(call, "GetFlightInfo") { context in
                try await service.getFlightInfo(try FlightDescriptor(serializedBytes: request[...]), context).serializedBytes()
            }
        }
        router.unary(Self.servicePath + "PollFlightInfo") { call, request in
            try await hooks.unary(call, "PollFlightInfo") { context in
                try await service.pollFlightInfo(try FlightDescriptor(serializedBytes: request[...]), context).serializedBytes()
            }
        }
        router.unary(Self.servicePath + "GetSchema") { call, request in
            try await hooks.unary(call, "GetSchema") { context in
                try await service.getSchema(try FlightDescriptor(serializedBytes: request[...]), context).serializedBytes()
            }
        }
        router.serverStreaming(Self.servicePath + "DoGet") { call, request in
            try await hooks.run(call, "DoGet") { context, _ in
                try await service.doGet(try Ticket(serializedBytes: request[...]), FlightResponseStream(call: call), context)
            }
        }
        router.bidirectional(Self.servicePath + "DoPut") { call in
            try await hooks.run(call, "DoPut") { context, _ in
                try await service.doPut(FlightRequestStream(call: call), FlightResponseStream(call: call), context)
            }
        }
        router.bidirectional(Self.servicePath + "DoExchange") { call in
            try await hooks.run(call, "DoExchange") { context, _ in
                try await service.doExchange(FlightRequestStream(call: call), FlightResponseStream(call: call), context)
            }
        }
        router.serverStreaming(Self.servicePath + "DoAction") { call, request in
            try await hooks.run(call, "DoAction") { context, _ in
                try await service.doAction(try FlightAction(serializedBytes: request[...]), FlightResponseStream(call: call), context)
            }
        }
        router.serverStreaming(Self.servicePath + "ListActions") { call, _ in
            try await hooks.run(call, "ListActions") { context, _ in
                try await service.listActions(FlightResponseStream(call: call), context)
            }
        }
        var configuration = configuration
        if let auth {
            configuration.admission = FlightAuthAdmission(auth: auth, inner: configuration.admission)
        }
        self.server = try GRPCServer(configuration: configuration, router: router)
    }

    /// The bound port (useful with port 0).
    public var port: Int { self.server.port }

    /// Stops accepting calls and lets calls in flight finish within `gracePeriod`.
    public func shutdown(gracePeriod: Duration = .seconds(5)) async {
        await self.server.shutdown(gracePeriod: gracePeriod)
    }
}

/// Authentication, middleware and error mapping around every handler.
struct FlightCallHooks: Sendable {
    let auth: FlightBasicAuth?
    let middleware: [any FlightServerMiddleware]
    let observer: (any FlightCallObserver)?

    static func unauthenticated(_ method: String) -> GRPCStatus {
        GRPCStatus(.unauthenticated, "\(method) needs 'authorization: Bearer <token>' from a Handshake")
    }

    func unary(_ call: GRPCServerCall, _ method: String,
               _ body: @escaping @Sendable (FlightCallContext) async throws -> [UInt8]) async throws -> [ArraySlice<UInt8>] {
        var response: [UInt8] = []
        try await self.run(call, method) { context, _ in response = try await body(context) }
        return [response[...]]
    }

    func run(_ call: GRPCServerCall, _ method: String, authenticate: Bool = true,
             _ body: (FlightCallContext, GRPCMetadata) async throws -> Void) async throws {
        guard let observer = self.observer else {
            return try await self.serve(call, method, authenticate: authenticate, body)
        }
        let started = ContinuousClock.now
        var code = GRPCStatus.Code.ok
        defer {
            observer.callEnded(
                FlightCallRecord(method: method, code: code, duration: ContinuousClock.now - started,
                                 peer: call.context.peer, receivedBytes: call.receivedBytes, sentBytes: call.sentBytes))
        }
        do {
            try await self.serve(call, method, authenticate: authenticate, body)
        } catch let status as GRPCStatus {
            code = status.code
            throw status
        } catch {
            code = FlightStatus.from(error).code
            throw error
        }
    }

    private func serve(_ call: GRPCServerCall, _ method: String, authenticate: Bool,
                       _ body: (FlightCallContext, GRPCMetadata) async throws -> Void) async throws {
        var identity: String?
        if authenticate, let auth = self.auth {
            identity = auth.identity(of: call.context.metadata)
            guard identity != nil else { throw Self.unauthenticated(method) }
        }
        let context = FlightCallContext(method: method, metadata: call.context.metadata, deadline: call.context.deadline,
                                        identity: identity)
        var headers = GRPCMetadata()
        var status = GRPCStatus.ok
        do {
            for hook in self.middleware {
                for (name, value) in try await hook.callStarted(context) {
                    switch value {
                    case let .string(text): headers.add(name, text)
                    case let .binary(bytes): headers.add(name, binary: bytes)
                    }
                }
            }
            if !headers.isEmpty, method != "Handshake" { call.sendInitialMetadata(headers) }
            try await body(context, headers)
        } catch {
            status = FlightStatus.from(error)
        }
        for hook in self.middleware { await hook.callEnded(context, status: status) }
        if status != .ok { throw status }
    }
}

/// How one Flight call ended, for metrics and logs.
public struct FlightCallRecord: Sendable {
    /// The Flight method, e.g. `DoPut`.
    public let method: String
    public let code: GRPCStatus.Code
    /// From the call's dispatch to its status.
    public let duration: Duration
    /// The client's IP address.
    public let peer: String
    /// Request and response message bytes.
    public let receivedBytes: Int
    public let sentBytes: Int
}

/// Told synchronously how every call ended. Called on the call's task: it must not block (record into atomics,
/// hand log lines to a writer thread).
public protocol FlightCallObserver: Sendable {
    func callEnded(_ record: FlightCallRecord)
}
