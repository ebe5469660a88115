import Synchronization

/// What a handler knows about its call.
public struct GRPCServerContext: Sendable {
    /// The request path, `/package.Service/Method`.
    public let path: String
    /// Request metadata (custom headers; `-bin` values decoded).
    public let metadata: GRPCMetadata
    /// When the client's `grpc-timeout` expires; the handler is cancelled then.
    public let deadline: ContinuousClock.Instant?
    /// The client's IP address (without the port; empty when unknown).
    public var peer: String = ""
}

/// A handler's side of one call: receive requests, send responses, set trailing metadata.
///
/// Streams are bounded both ways: `receive()` hands over messages as they arrive (the HTTP/2 window reopens as
/// they are taken) and `send` suspends while more than the configured number of bytes wait to be sent.
public final class GRPCServerCall: Sendable {
    /// Request path, metadata and deadline.
    public let context: GRPCServerContext
    let channel: StreamChannel
    private let trailing = Mutex(GRPCMetadata())
    private let received = Atomic<Int>(0)
    private let sent = Atomic<Int>(0)

    /// Request message bytes taken by the handler so far (gRPC prefixes excluded).
    public var receivedBytes: Int { self.received.load(ordering: .relaxed) }
    /// Response message bytes queued so far (gRPC prefixes excluded).
    public var sentBytes: Int { self.sent.load(ordering: .relaxed) }

    init(context: GRPCServerContext, channel: StreamChannel) {
        self.context = context
        self.channel = channel
    }

    /// The next request message, or nil when the client finished sending.
    /// - Throws: CANCELLED when the client reset the stream or the connection dropped, DEADLINE_EXCEEDED after the
    ///   deadline, RESOURCE_EXHAUSTED/INTERNAL when the client sent an oversized or malformed message.
    public func receive() async throws(GRPCStatus) -> [UInt8]? {
        let message = try await self.channel.receive()
        if let message { self.received.wrappingAdd(message.count, ordering: .relaxed) }
        return message
    }

    /// The request messages as an async sequence (throws ``GRPCStatus``).
    public var requests: GRPCMessageSequence { GRPCMessageSequence(channel: self.channel) }

    /// Sends response headers with `metadata` now (otherwise they go out with the first message or the status).
    public func sendInitialMetadata(_ metadata: GRPCMetadata) {
        self.channel.state.withLock { s in
            if !s.headersRequested {
                s.initialMetadata = metadata
                s.headersRequested = true
            }
        }
        self.channel.wake()
    }

    /// Sends one message made of `parts` (concatenated on the wire without copying them).
    /// - Throws: the call's terminal status when the call ended (cancelled, deadline, connection lost).
    public func send(_ parts: [ArraySlice<UInt8>]) async throws(GRPCStatus) {
        var total = 0
        for p in parts { total += p.count }
        guard total <= Int(UInt32.max) else {
            throw GRPCStatus(.resourceExhausted, "message of \(total) bytes exceeds 4 GiB")
        }
        var all: [ArraySlice<UInt8>] = [grpcPrefix(length: total)[...]]
        all.append(contentsOf: parts)
        try await self.channel.send(all, byteCount: total + 5)
        self.sent.wrappingAdd(total, ordering: .relaxed)
    }

    /// Sends one message.
    /// - Throws: as ``send(_:)-([ArraySlice<UInt8>])``.
    public func send(_ message: [UInt8]) async throws(GRPCStatus) {
        try await self.send([message[...]])
    }

    /// Metadata to send in the trailers with the status.
    public func setTrailingMetadata(_ metadata: GRPCMetadata) {
        self.trailing.withLock { $0 = metadata }
    }

    var trailingMetadata: GRPCMetadata { self.trailing.withLock { $0 } }
}

/// Received messages as an `AsyncSequence`; iteration throws ``GRPCStatus``.
public struct GRPCMessageSequence: AsyncSequence, Sendable {
    /// Each message is one `[UInt8]` (the single copy out of the HTTP/2 frames).
    public typealias Element = [UInt8]
    let channel: StreamChannel

    /// The iterator.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let channel: StreamChannel
        /// The next message or nil at the end.
        /// - Throws: ``GRPCStatus`` when the call ended abnormally.
        public mutating func next() async throws(GRPCStatus) -> [UInt8]? { try await self.channel.receive() }

        /// The next message (isolation-aware form).
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(GRPCStatus) -> [UInt8]? {
            try await self.channel.receive()
        }
    }

    /// Creates the iterator.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(channel: self.channel) }
}

/// A server-side handler of one method: gets the call, returns normally for OK or throws a ``GRPCStatus``
/// (other errors become UNKNOWN).
public typealias GRPCServerHandler = @Sendable (GRPCServerCall) async throws -> Void

/// Method paths mapped to handlers, with helpers for the four call kinds.
public struct GRPCRouter: Sendable {
    var handlers: [String: GRPCServerHandler] = [:]

    /// Creates an empty router.
    public init() {}

    /// Registers a raw handler for `path` (`/package.Service/Method`).
    public mutating func register(_ path: String, _ handler: @escaping GRPCServerHandler) {
        self.handlers[path] = handler
    }

    /// Registers a unary method: exactly one request, one response (its parts are sent without copying).
    /// Zero or several request messages end the call with UNIMPLEMENTED, as gRPC does.
    public mutating func unary(
        _ path: String, _ body: @escaping @Sendable (GRPCServerCall, [UInt8]) async throws -> [ArraySlice<UInt8>]
    ) {
        self.handlers[path] = { call in
            let request = try await Self.single(call)
            let response = try await body(call, request)
            try await call.send(response)
        }
    }

    /// Registers a server-streaming method: one request, responses sent by `body` through the call.
    public mutating func serverStreaming(
        _ path: String, _ body: @escaping @Sendable (GRPCServerCall, [UInt8]) async throws -> Void
    ) {
        self.handlers[path] = { call in
            let request = try await Self.single(call)
            try await body(call, request)
        }
    }

    /// Registers a client-streaming method: `body` reads `call.requests` and returns the single response.
    public mutating func clientStreaming(
        _ path: String, _ body: @escaping @Sendable (GRPCServerCall) async throws -> [ArraySlice<UInt8>]
    ) {
        self.handlers[path] = { call in
            let response = try await body(call)
            try await call.send(response)
        }
    }

    /// Registers a bidirectional-streaming method.
    public mutating func bidirectional(_ path: String, _ body: @escaping GRPCServerHandler) {
        self.handlers[path] = body
    }

    private static func single(_ call: GRPCServerCall) async throws(GRPCStatus) -> [UInt8] {
        guard let request = try await call.receive() else {
            throw GRPCStatus(.unimplemented, "unary call without a request message")
        }
        guard try await call.receive() == nil else {
            throw GRPCStatus(.unimplemented, "unary call with more than one request message")
        }
        return request
    }
}
