import Synchronization
internal import IOLoop

/// Client settings.
public struct GRPCClientConfiguration: Sendable {
    /// Server host (numeric IPv4/IPv6 or a name from /etc/hosts).
    public var host: String
    /// Server port.
    public var port: Int
    /// TLS (ALPN h2, trust roots, server-name check) when set; h2c with prior knowledge otherwise.
    public var tls: TLSConfiguration?
    /// Largest accepted response message; default 2 GiB - 1 (as Arrow Flight). Larger: RESOURCE_EXHAUSTED.
    public var maxReceiveMessageSize: Int
    /// Per-stream receive window.
    public var streamWindowSize: UInt32
    /// Connection receive window.
    public var connectionWindowSize: Int32
    /// SETTINGS_MAX_FRAME_SIZE we accept.
    public var maxFrameSize: UInt32
    /// Unsent request bytes per call before `send` suspends.
    public var streamSendBufferLimit: Int
    /// Received-but-unread response bytes per call before the window stops reopening.
    public var streamReceiveBufferLimit: Int
    /// `user-agent` header.
    public var userAgent: String
    /// Send a PING after this much silence from the server (nil: never); an unanswered PING closes the
    /// connection after `keepaliveTimeout` and its calls end with UNAVAILABLE.
    public var keepaliveInterval: Duration?
    /// How long a keepalive PING may stay unanswered.
    public var keepaliveTimeout: Duration

    /// Creates a configuration with defaults.
    public init(host: String, port: Int, tls: TLSConfiguration? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.maxReceiveMessageSize = Int(Int32.max)
        // 16 MiB: the server may send 8 MiB per WINDOW_UPDATE round trip (the update goes out at half the window).
        self.streamWindowSize = 16 << 20
        self.connectionWindowSize = 256 << 20
        self.maxFrameSize = 4 << 20
        self.streamSendBufferLimit = 4 << 20
        self.streamReceiveBufferLimit = 8 << 20
        self.userAgent = "grpcwire-swift/0.1"
        self.keepaliveInterval = nil
        self.keepaliveTimeout = .seconds(20)
    }
}

/// Loop-confined state of a channel: the current connection and which connection carries each call.
final class ClientChannelCore: LoopHandler {
    let configuration: GRPCClientConfiguration
    let tlsContext: TLSContext?
    var current: ClientConnection?
    var callConnection: [Int: ClientConnection] = [:]
    /// This core's handler id on its loop (for the resolver's answer).
    var id: UInt64 = 0
    /// Calls waiting for the server's address, resolved on a thread of its own (getaddrinfo blocks).
    private var waiting: [ClientCallRecord] = []
    private var resolving = false

    init(configuration: GRPCClientConfiguration, tlsContext: TLSContext?) {
        self.configuration = configuration
        self.tlsContext = tlsContext
    }

    func handleEvents(_ events: UInt32, runner: LoopRunner) {}
    func closeForShutdown(runner: LoopRunner) { self.close(runner: runner) }

    /// Closes the connection (its calls end with UNAVAILABLE), fails the calls waiting for an address, and leaves
    /// the loop: later calls end with "channel closed".
    func close(runner: LoopRunner) {
        runner.detach(self.id)
        self.current?.close(runner: runner, reason: GRPCStatus(.unavailable, "channel closed"))
        self.current = nil
        self.failWaiting(GRPCStatus(.unavailable, "channel closed"))
    }

    /// Starts `record` on a usable connection, connecting (again) when there is none. A host name is resolved
    /// off the loop first; numeric addresses connect at once.
    func start(_ record: ClientCallRecord, runner: LoopRunner) {
        if let c = self.current, c.isUsable {
            self.run(record, on: c, runner: runner)
            return
        }
        let host = self.configuration.host
        let port = self.configuration.port
        if let literal = SocketAddress.numeric(host, port: port) {
            self.connect(to: literal, runner: runner, then: [record])
            return
        }
        self.waiting.append(record)
        guard !self.resolving else { return }
        self.resolving = true
        let loop = runner.loop
        let id = self.id
        SocketAddress.resolve(host: host, port: port) { result in
            loop.execute { runner in (runner.handler(id) as? ClientChannelCore)?.resolved(result, runner: runner) }
        }
    }

    private func resolved(_ result: Result<[SocketAddress], IOLoopError>, runner: LoopRunner) {
        self.resolving = false
        let records = self.waiting
        self.waiting = []
        switch result {
        case .success(let addresses):
            if let c = self.current, c.isUsable {
                for record in records { self.run(record, on: c, runner: runner) }
            } else if let first = addresses.first {
                self.connect(to: first, runner: runner, then: records)
            }
        case .failure(let error):
            let status = GRPCStatus(.unavailable, "\(GRPCWireError(error))")
            for record in records { Self.fail(record, status) }
        }
    }

    private func connect(to address: SocketAddress, runner: LoopRunner, then records: [ClientCallRecord]) {
        do {
            let c = try ClientConnection.connect(
                to: address, runner: runner, configuration: self.configuration, tlsContext: self.tlsContext)
            c.core = self
            self.current = c
            for record in records { self.run(record, on: c, runner: runner) }
        } catch {
            let status = GRPCStatus(.unavailable, "\(error)")
            for record in records { Self.fail(record, status) }
        }
    }

    private func run(_ record: ClientCallRecord, on connection: ClientConnection, runner: LoopRunner) {
        if record.channel.state.withLock({ $0.finalStatus != nil }) { return }  // cancelled or expired already
        self.callConnection[record.key] = connection
        connection.start(record, runner: runner)
    }

    private func failWaiting(_ status: GRPCStatus) {
        let records = self.waiting
        self.waiting = []
        for record in records { Self.fail(record, status) }
    }

    static func fail(_ record: ClientCallRecord, _ status: GRPCStatus) {
        record.channel.setFinalStatus(status, GRPCMetadata())
        record.channel.fail(status, cancelTask: false)
    }
}

/// A gRPC channel: calls to one server multiplexed over one HTTP/2 connection, reconnecting after failures
/// (calls in flight on a failed connection end with UNAVAILABLE). Every channel of the process runs on one
/// shared group of event-loop threads (``GRPCChannel/clientLoops``); none starts threads of its own.
public final class GRPCChannel: Sendable {
    /// The configuration in use.
    public let configuration: GRPCClientConfiguration
    private let loop: EventLoop
    private let coreSlot = ListenerSlot()
    private let nextKey = Atomic<Int>(1)

    /// The event loops all client channels share (one per processor, started on first use, never stopped).
    static let clientLoops = EventLoopGroup.processWide(
        count: EventLoopGroup.defaultCount, tickInterval: .milliseconds(50))

    /// Creates a channel; the connection opens with the first call.
    /// - Throws: `.tls` when the TLS configuration cannot be loaded.
    public init(configuration: GRPCClientConfiguration) throws(GRPCWireError) {
        let tls = try configuration.tls.map { c throws(GRPCWireError) in try TLSContext.grpc(c, isServer: false) }
        self.configuration = configuration
        self.loop = Self.clientLoops.nextLoop()
        let slot = self.coreSlot
        self.loop.execute { runner in
            let core = ClientChannelCore(configuration: configuration, tlsContext: tls)
            core.id = runner.attach(core)
            slot.id.store(core.id, ordering: .relaxed)
        }
    }

    /// Starts a call to `path` (`/package.Service/Method`). `timeout` becomes `grpc-timeout` and a local deadline
    /// after which the call ends with DEADLINE_EXCEEDED and the stream is reset.
    public func makeCall(path: String, metadata: GRPCMetadata = GRPCMetadata(), timeout: Duration? = nil)
        -> GRPCClientCall
    {
        let key = self.nextKey.wrappingAdd(1, ordering: .relaxed).oldValue
        let config = self.configuration
        var headers: [(String, String)] = [
            (":method", "POST"), (":scheme", config.tls == nil ? "http" : "https"), (":path", path),
            (":authority", "\(config.host):\(config.port)"),
        ]
        if let timeout { headers.append(("grpc-timeout", GRPCTimeout.encode(timeout))) }
        headers += [
            ("te", "trailers"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity"),
            ("user-agent", config.userAgent),
        ]
        headers += metadata.wirePairs
        let loop = self.loop
        let slot = self.coreSlot
        let channel = StreamChannel(
            outboundLimit: config.streamSendBufferLimit, inboundLimit: config.streamReceiveBufferLimit
        ) {
            loop.execute { runner in
                guard let core = runner.handler(slot.id.load(ordering: .relaxed)) as? ClientChannelCore else { return }
                core.callConnection[key]?.serviceCall(key, runner: runner)
            }
        }
        let call = GRPCClientCall(channel: channel)
        let requestHeaders = headers
        if let timeout {
            let timer = Task {
                do { try await Task.sleep(for: timeout) } catch { return }
                let status = GRPCStatus(.deadlineExceeded, "Deadline Exceeded")
                channel.setFinalStatus(status, GRPCMetadata())
                channel.fail(status, cancelTask: false)
                channel.state.withLock { $0.cancelRequested = true }
                channel.wake()
            }
            channel.state.withLock { $0.timer = timer }
        }
        self.loop.execute { runner in
            let record = ClientCallRecord(
                key: key, channel: channel, headers: requestHeaders, maxMessageSize: config.maxReceiveMessageSize)
            guard let core = runner.handler(slot.id.load(ordering: .relaxed)) as? ClientChannelCore else {
                ClientChannelCore.fail(record, GRPCStatus(.unavailable, "channel closed"))
                return
            }
            core.start(record, runner: runner)
        }
        return call
    }

    /// A unary call: sends `request` (its slices without copying), returns the single response. A call the server
    /// refused unprocessed (``GRPCStatus/refusedStream``: it was closing the connection, e.g. at its idle timeout,
    /// as the call went out) is sent once more — on a new connection when that one is going away — as gRPC's
    /// transparent retry does.
    /// - Throws: the call's status when it is not OK, INTERNAL when the server sent no or several responses.
    public func unary(
        path: String, request: [ArraySlice<UInt8>], metadata: GRPCMetadata = GRPCMetadata(), timeout: Duration? = nil
    ) async throws(GRPCStatus) -> [UInt8] {
        do {
            return try await self.unaryOnce(path: path, request: request, metadata: metadata, timeout: timeout)
        } catch where error == .refusedStream {
            return try await self.unaryOnce(path: path, request: request, metadata: metadata, timeout: timeout)
        }
    }

    private func unaryOnce(
        path: String, request: [ArraySlice<UInt8>], metadata: GRPCMetadata, timeout: Duration?
    ) async throws(GRPCStatus) -> [UInt8] {
        let call = self.makeCall(path: path, metadata: metadata, timeout: timeout)
        // Message and end of stream together: HEADERS and one DATA frame with END_STREAM leave in one write.
        try await call.send(request, last: true)
        guard let response = try await call.receive() else {
            throw GRPCStatus(.internal, "unary call ended without a response")
        }
        guard try await call.receive() == nil else { throw GRPCStatus(.internal, "unary call got several responses") }
        return response
    }

    deinit { self.close() }

    /// Closes the connection (calls in flight end with UNAVAILABLE); later calls end with UNAVAILABLE "channel
    /// closed". The shared event loops keep running.
    public func close() {
        let slot = self.coreSlot
        self.loop.execute { runner in
            (runner.handler(slot.id.load(ordering: .relaxed)) as? ClientChannelCore)?.close(runner: runner)
        }
    }
}

/// A client call: send requests, finish sending, receive responses, then read the status.
public final class GRPCClientCall: Sendable {
    let channel: StreamChannel

    init(channel: StreamChannel) { self.channel = channel }

    /// Sends one request message made of `parts` (not copied).
    /// - Throws: the call's status when it already ended.
    public func send(_ parts: [ArraySlice<UInt8>]) async throws(GRPCStatus) {
        try await self.send(parts, last: false)
    }

    /// Sends one request message; with `last` the request stream ends with it (no separate half-close frame).
    /// - Throws: the call's status when it already ended.
    public func send(_ parts: [ArraySlice<UInt8>], last: Bool) async throws(GRPCStatus) {
        var total = 0
        for p in parts { total += p.count }
        var all: [ArraySlice<UInt8>] = [grpcPrefix(length: total)[...]]
        all.append(contentsOf: parts)
        do {
            try await self.channel.send(all, byteCount: total + 5, last: last)
        } catch {
            throw await self.channel.waitFinalStatusIfEnded(error)
        }
    }

    /// Sends one request message.
    /// - Throws: as ``send(_:)-([ArraySlice<UInt8>])``.
    public func send(_ message: [UInt8]) async throws(GRPCStatus) { try await self.send([message[...]]) }

    /// Ends the request stream (half-close).
    public func finishSending() {
        self.channel.state.withLock { $0.outboundFinished = true }
        self.channel.wake()
    }

    /// The next response, or nil after the last one when the status is OK.
    /// - Throws: the final status when it is not OK.
    public func receive() async throws(GRPCStatus) -> [UInt8]? {
        if let m = try await self.channel.receive() { return m }
        let (status, _) = await self.channel.waitFinalStatus()
        if status.code != .ok { throw status }
        return nil
    }

    /// Responses as an async sequence that throws the final status when it is not OK.
    public var responses: GRPCResponseSequence { GRPCResponseSequence(call: self) }

    /// The response headers' metadata (empty for Trailers-Only responses).
    public func initialMetadata() async -> GRPCMetadata { await self.channel.waitResponseHeaders() }

    /// The final status.
    public func status() async -> GRPCStatus { await self.channel.waitFinalStatus().0 }

    /// The trailing metadata.
    public func trailingMetadata() async -> GRPCMetadata { await self.channel.waitFinalStatus().1 }

    /// Cancels the call: RST_STREAM(CANCEL) is sent and the call ends with CANCELLED.
    public func cancel() {
        let status = GRPCStatus(.cancelled, "call cancelled")
        self.channel.setFinalStatus(status, GRPCMetadata())
        self.channel.fail(status, cancelTask: false)
        self.channel.state.withLock { $0.cancelRequested = true }
        self.channel.wake()
    }
}

/// A client call's responses; iteration throws the final status when it is not OK.
public struct GRPCResponseSequence: AsyncSequence, Sendable {
    /// One response message.
    public typealias Element = [UInt8]
    let call: GRPCClientCall

    /// The iterator.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let call: GRPCClientCall
        /// The next response or nil.
        /// - Throws: the final status when it is not OK.
        public mutating func next() async throws(GRPCStatus) -> [UInt8]? { try await self.call.receive() }

        /// The next response (isolation-aware form).
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(GRPCStatus) -> [UInt8]? {
            try await self.call.receive()
        }
    }

    /// Creates the iterator.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: self.call) }
}

extension StreamChannel {
    /// Waits for the client's final status.
    func waitFinalStatus() async -> (GRPCStatus, GRPCMetadata) {
        if let f = self.state.withLock({ $0.finalStatus }) { return f }
        return await withCheckedContinuation { cont in
            let ready = self.state.withLock { s -> (GRPCStatus, GRPCMetadata)? in
                if let f = s.finalStatus { return f }
                s.statusWaiters.append(cont)
                return nil
            }
            if let ready { cont.resume(returning: ready) }
        }
    }

    /// Waits for response headers (or the end of the call).
    func waitResponseHeaders() async -> GRPCMetadata {
        if let h = self.state.withLock({ $0.responseHeaders }) { return h }
        return await withCheckedContinuation { cont in
            let ready = self.state.withLock { s -> GRPCMetadata? in
                if let h = s.responseHeaders { return h }
                s.headersWaiters.append(cont)
                return nil
            }
            if let ready { cont.resume(returning: ready) }
        }
    }

    /// A send failed: report the call's final status (the server's status wins over a local "closed" error).
    func waitFinalStatusIfEnded(_ error: GRPCStatus) async -> GRPCStatus {
        if let f = self.state.withLock({ $0.finalStatus }) { return f.0 }
        return error
    }
}
