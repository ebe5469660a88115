import Synchronization
internal import IOLoop

/// Loop-side state of one server stream.
final class ServerStream {
    let id: Int32
    var path = ""
    var method = ""
    var contentType = ""
    var timeout: String?
    var encoding: String?
    var metadata = GRPCMetadata()
    var headerBytes = 0
    var channel: StreamChannel?
    var deframer: MessageDeframer
    var responseStarted = false
    var deferred = false
    var trailersSubmitted = false
    var remoteClosed = false
    /// Received bytes not yet returned to the peer's flow-control window.
    var owed = 0
    /// Answered without a handler (or failed): further DATA is dropped.
    var rejected = false
    /// Length of the partial message the admission hook admitted (released if the message never completes).
    var partialAdmitted: Int?

    init(id: Int32, maxMessageSize: Int) {
        self.id = id
        self.deframer = MessageDeframer(maxMessageSize: maxMessageSize)
    }

    /// Drops a partial message and returns its budget charge and admission.
    func dropPartial() {
        let charged = self.deframer.reset()
        let admitted = self.partialAdmitted
        self.partialAdmitted = nil
        guard let rc = self.channel?.receiveCharges else { return }
        rc.release(charged: charged, length: admitted ?? 0, admitted: admitted != nil)
    }
}

/// A server-side HTTP/2 connection: dispatches request streams to handlers.
final class ServerConnection: H2Connection {
    let shared: ServerShared
    let key: Int
    private var streams: [Int32: ServerStream] = [:]
    private var draining = false
    /// Buffered request bytes of this connection's streams.
    let receiveBudget: ByteBudget
    /// Queued response bytes of this connection's streams.
    let sendBudget: ByteBudget
    /// The client's IP address, for handlers (``GRPCServerContext/peer``).
    var peer = ""
    /// The client's address and the receive budget all its connections share (released when this one ends).
    private var peerAddress: PeerAddress?
    private var peerBudget: ByteBudget?
    /// Since when the connection has had no open stream (idle timeout).
    private var idleSince: ContinuousClock.Instant? = .now

    init(fd: Int32, loop: EventLoop, shared: ServerShared, key: Int) {
        self.shared = shared
        self.key = key
        self.receiveBudget = ByteBudget(limit: shared.configuration.connectionReceiveBudget)
        self.sendBudget = ByteBudget(limit: shared.configuration.connectionSendBufferLimit)
        super.init(fd: fd, loop: loop, receivesPreface: true)
    }

    /// Creates the connection on the current loop thread and starts HTTP/2 (or the TLS handshake).
    static func start(
        fd: Int32, runner: LoopRunner, shared: ServerShared, key: Int, peer: PeerAddress? = nil,
        establishedTLS: TLSSession? = nil
    ) {
        let conn = ServerConnection(fd: fd, loop: runner.loop, shared: shared, key: key)
        conn.peer = peer?.description ?? ""
        if let peer {
            conn.peerAddress = peer
            conn.peerBudget = shared.peerBudgets.acquire(peer)
        }
        let config = shared.configuration
        conn.keepaliveInterval = config.keepaliveInterval
        conn.keepaliveTimeout = config.keepaliveTimeout
        conn.handshakeTimeout = config.handshakeTimeout
        conn.awaitingPreface = true
        do {
            if let establishedTLS {
                conn.tls = establishedTLS
            } else if let ctx = shared.tlsContext {
                conn.tls = try TLSSession(context: ctx, fd: fd, hostForClient: nil)
            }
            conn.session = try NGHTTP2Calls.makeSession(
                server: true, owner: conn,
                settings: .init(
                    maxConcurrentStreams: config.maxConcurrentStreams, initialWindowSize: config.streamWindowSize,
                    maxFrameSize: config.maxFrameSize, maxHeaderListSize: UInt32(config.maxHeaderListSize),
                    connectionWindowSize: config.connectionWindowSize, enablePush: false))
            conn.id = try runner.register(fd: fd, events: H2Connection.readEvents, handler: conn)
        } catch {
            if let session = conn.session {
                conn.session = nil
                NGHTTP2Calls.deleteSession(session)
            }
            _ = closeFD(fd)
            if let peer { shared.peerBudgets.release(peer) }
            shared.connectionEnded(key: key)
            return
        }
        shared.connectionStarted(key: key, loop: runner.loop, handlerID: conn.id)
        conn.flush(runner: runner)
        // OpenSSL may already hold the client's first records (read with the handshake): epoll will not report them.
        if establishedTLS != nil { conn.handleEvents(H2Connection.readEvents, runner: runner) }
    }

    override func connectionClosed(reason: GRPCStatus) {
        let all = self.streams.values
        self.streams = [:]
        for s in all {
            s.dropPartial()
            s.channel?.fail(GRPCStatus(.cancelled, "connection closed: \(reason.message)"), cancelTask: true)
        }
        if let peer = self.peerAddress { self.shared.peerBudgets.release(peer) }
        self.shared.connectionEnded(key: self.key)
    }

    /// Closed to make room for a new connection (this one is the oldest still in its handshake).
    func evict(runner: LoopRunner) {
        self.close(
            runner: runner, reason: GRPCStatus(.unavailable, "closed at the connection limit before its handshake"))
    }

    override func tick(now: ContinuousClock.Instant, runner: LoopRunner) {
        super.tick(now: now, runner: runner)
        guard !self.isClosed, let timeout = self.shared.configuration.idleTimeout, let since = self.idleSince,
            !self.awaitingPreface, now - since > timeout, let session = self.session
        else { return }
        self.idleSince = nil
        self.draining = true
        NGHTTP2Calls.terminate(session, errorCode: NGHTTP2Calls.errorNoError)
        self.mustClose = true
        self.flush(runner: runner)
    }

    /// Sends GOAWAY; the connection closes once its streams are done.
    func beginDrain(runner: LoopRunner) {
        guard !self.draining, let session = self.session else { return }
        self.draining = true
        NGHTTP2Calls.submitGoaway(session)
        self.flush(runner: runner)
    }

    // MARK: - Receiving

    override func onBeginHeaders(streamID: Int32, category: UInt32) -> Int32 {
        if category == NGHTTP2Calls.hcatRequest {
            self.streams[streamID] = ServerStream(
                id: streamID, maxMessageSize: self.shared.configuration.maxReceiveMessageSize)
            self.idleSince = nil
        }
        return 0
    }

    override func onHeader(
        streamID: Int32, category: UInt32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>
    ) -> Int32 {
        guard category == NGHTTP2Calls.hcatRequest, let stream = self.streams[streamID] else { return 0 }
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > self.shared.configuration.maxHeaderListSize {
            self.streams[streamID] = nil
            return NGHTTP2Calls.errTemporalCallbackFailure
        }
        let key = String(decoding: name, as: UTF8.self)
        switch key {
        case ":path": stream.path = String(decoding: value, as: UTF8.self)
        case ":method": stream.method = String(decoding: value, as: UTF8.self)
        case "content-type": stream.contentType = String(decoding: value, as: UTF8.self)
        case "grpc-timeout": stream.timeout = String(decoding: value, as: UTF8.self)
        case "grpc-encoding": stream.encoding = String(decoding: value, as: UTF8.self)
        default:
            if !GRPCMetadata.isReserved(key) { stream.metadata.addWire(name: key, value: ArraySlice(value)) }
        }
        return 0
    }

    override func onFrameRecv(_ frame: H2FrameInfo) -> Int32 {
        if self.awaitingPreface {
            // nghttp2 checked the client magic; this is its first frame (SETTINGS).
            self.awaitingPreface = false
            self.shared.connectionEstablished(key: self.key)
        }
        guard let stream = self.streams[frame.streamID] else { return 0 }
        if frame.type == NGHTTP2Calls.frameHeaders && frame.category == NGHTTP2Calls.hcatRequest {
            self.dispatch(stream)
        }
        if (frame.type == NGHTTP2Calls.frameHeaders || frame.type == NGHTTP2Calls.frameData) && frame.endStream {
            self.endOfRequests(stream)
        }
        return 0
    }

    private func endOfRequests(_ stream: ServerStream) {
        stream.remoteClosed = true
        guard !stream.rejected, let channel = stream.channel else { return }
        if stream.deframer.hasPartialMessage {
            stream.dropPartial()
            self.failStream(stream, GRPCStatus(.internal, "request stream ended inside a message"))
        } else {
            channel.finishInbound()
        }
    }

    override func noteReceived(_ count: Int, inPlace: Bool) { self.shared.receivedBytes.note(count, inPlace: inPlace) }

    override func receiveRoom(streamID: Int32) -> (room: UnsafeMutableRawBufferPointer, owner: [UInt8])? {
        guard let stream = self.streams[streamID], !stream.rejected, let channel = stream.channel else { return nil }
        return stream.deframer.receiveRoom(charge: channel.chargeReceived)
    }

    override func onDataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let session = self.session else { return 0 }
        guard let stream = self.streams[streamID], !stream.rejected, let channel = stream.channel else {
            NGHTTP2Calls.consume(session, streamID: streamID, bytes: data.count)
            return 0
        }
        let typed = data.bindMemory(to: UInt8.self)
        let admission = self.shared.configuration.admission
        do {
            try stream.deframer.feed(
                typed,
                admit: { length in
                    if let refusal = admission?.admit(path: stream.path, metadata: stream.metadata, length: length) {
                        return refusal
                    }
                    if admission != nil { stream.partialAdmitted = length }
                    return nil
                },
                charge: channel.chargeReceived,
                emit: { message, charge in
                    stream.partialAdmitted = nil
                    channel.deliver(message, charge: charge)
                })
        } catch {
            NGHTTP2Calls.consume(session, streamID: streamID, bytes: data.count)
            stream.dropPartial()
            switch error {
            case .messageTooLarge(let length, let limit):
                self.failStream(
                    stream, GRPCStatus(.resourceExhausted, "received message larger than max (\(length) vs. \(limit))"))
            case .messageRefused(let code, let message):
                self.failStream(stream, GRPCStatus(GRPCStatus.Code(rawValue: code) ?? .resourceExhausted, message))
            case .receiveBudgetExhausted:
                self.failStream(stream, GRPCStatus(.resourceExhausted, error.description))
            default:
                self.failStream(stream, GRPCStatus(.internal, error.description))
            }
            return 0
        }
        stream.owed += data.count
        if channel.windowMayReopen(partial: stream.deframer.partialBytes) {
            NGHTTP2Calls.consume(session, streamID: streamID, bytes: stream.owed)
            stream.owed = 0
        }
        return 0
    }

    /// Ends a stream with `status` from the loop side and cancels its handler.
    private func failStream(_ stream: ServerStream, _ status: GRPCStatus) {
        stream.rejected = true
        guard let channel = stream.channel else { return }
        channel.setTrailers(status, GRPCMetadata())
        channel.fail(status, cancelTask: true)
        if let session = self.session, stream.owed > 0 {
            NGHTTP2Calls.consume(session, streamID: stream.id, bytes: stream.owed)
            stream.owed = 0
        }
        self.service(stream)
    }

    override func onStreamClose(streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let stream = self.streams.removeValue(forKey: streamID) else { return 0 }
        if self.streams.isEmpty { self.idleSince = .now }
        stream.dropPartial()
        if !stream.trailersSubmitted, let channel = stream.channel {
            let status =
                errorCode == NGHTTP2Calls.errorNoError
                ? GRPCStatus(.cancelled, "stream closed before the response completed")
                : GRPCStatus(.cancelled, "call cancelled by the client (HTTP/2 error \(errorCode))")
            channel.fail(status, cancelTask: true)
        }
        return 0
    }

    override func onFrameSend(type: UInt8, flags: UInt8, streamID: Int32) {
        // Trailers went out before the client finished: reset with NO_ERROR (PROTOCOLS.md §3).
        guard type == NGHTTP2Calls.frameHeaders, flags & NGHTTP2Calls.flagEndStream != 0, let session = self.session,
            let stream = self.streams[streamID]
        else { return }
        if !stream.remoteClosed && !NGHTTP2Calls.remoteClosed(session, streamID: streamID) {
            NGHTTP2Calls.submitReset(session, streamID: streamID, errorCode: NGHTTP2Calls.errorNoError)
        }
    }

    override func onFrameNotSent(type: UInt8, streamID: Int32, errorCode: Int32) {
        // Response headers or trailers nghttp2 could not send (e.g. over its header block limit): without a reset
        // the client would wait for its deadline, forever without one.
        guard type == NGHTTP2Calls.frameHeaders, let session = self.session, let stream = self.streams[streamID] else {
            return
        }
        stream.rejected = true
        stream.trailersSubmitted = true
        NGHTTP2Calls.submitReset(session, streamID: streamID, errorCode: NGHTTP2Calls.errorInternal)
        stream.channel?.fail(
            GRPCStatus(.internal, "response headers not sent: \(NGHTTP2Calls.errorText(errorCode))"), cancelTask: true)
    }

    // MARK: - Dispatch

    private func respondImmediately(_ stream: ServerStream, _ status: GRPCStatus) {
        guard self.session != nil else { return }
        stream.rejected = true
        stream.responseStarted = true
        stream.trailersSubmitted = true
        var headers = [
            (":status", "200"), ("content-type", "application/grpc"), ("grpc-status", String(status.code.rawValue)),
        ]
        if !status.message.isEmpty { headers.append(("grpc-message", GRPCMessageEncoding.encode(status.message))) }
        self.submitResponse(stream, headers: headers, endStream: true)
    }

    /// Submits response headers; a stream that cannot take them is reset (INTERNAL_ERROR) and its call failed.
    private func submitResponse(_ stream: ServerStream, headers: [(String, String)], endStream: Bool) {
        guard let session = self.session else { return }
        let outcome = NGHTTP2Calls.submitResponse(session, streamID: stream.id, headers: headers, endStream: endStream)
        guard outcome != .submitted else { return }
        stream.rejected = true
        stream.trailersSubmitted = true
        NGHTTP2Calls.submitReset(session, streamID: stream.id, errorCode: NGHTTP2Calls.errorInternal)
        stream.channel?.fail(GRPCStatus(.internal, "cannot send response headers: \(outcome)"), cancelTask: true)
    }

    private func dispatch(_ stream: ServerStream) {
        guard let session = self.session else { return }
        if self.draining {
            NGHTTP2Calls.submitReset(session, streamID: stream.id, errorCode: NGHTTP2Calls.errorRefusedStream)
            stream.rejected = true
            return
        }
        guard stream.method == "POST" else {
            stream.rejected = true
            stream.responseStarted = true
            stream.trailersSubmitted = true
            self.submitResponse(stream, headers: [(":status", "405")], endStream: true)
            return
        }
        guard stream.contentType.hasPrefix("application/grpc") else {
            stream.rejected = true
            stream.responseStarted = true
            stream.trailersSubmitted = true
            self.submitResponse(stream, headers: [(":status", "415")], endStream: true)
            return
        }
        if let encoding = stream.encoding, encoding != "identity" {
            self.respondImmediately(
                stream,
                GRPCStatus(.unimplemented, "grpc-encoding '\(Self.quoted(encoding))' is not supported; use identity"))
            return
        }
        guard let handler = self.shared.router.handlers[stream.path] else {
            self.respondImmediately(stream, GRPCStatus(.unimplemented, "Method not found: \(Self.quoted(stream.path))"))
            return
        }
        let loop = self.loop
        let connID = self.id
        let streamID = stream.id
        let config = self.shared.configuration
        let charges = ReceiveCharges(
            connection: self.receiveBudget, peer: self.peerBudget, server: self.shared.receiveBudget,
            admission: config.admission,
            path: stream.path)
        let channel = StreamChannel(
            outboundLimit: config.streamSendBufferLimit, inboundLimit: config.streamReceiveBufferLimit,
            receiveCharges: charges, sendBudget: self.sendBudget
        ) {
            loop.execute { runner in
                (runner.handler(connID) as? ServerConnection)?.serviceStream(streamID, runner: runner)
            }
        }
        stream.channel = channel
        var deadline: ContinuousClock.Instant?
        var timeout: Duration?
        if let t = stream.timeout, let d = GRPCTimeout.parse(t) {
            timeout = d
            deadline = ContinuousClock.now.advanced(by: d)
        }
        let call = GRPCServerCall(
            context: GRPCServerContext(path: stream.path, metadata: stream.metadata, deadline: deadline, peer: self.peer),
            channel: channel)
        let task = Task {
            var status = GRPCStatus.ok
            do {
                try await handler(call)
            } catch let s as GRPCStatus {
                status = s
            } catch is CancellationError {
                status = GRPCStatus(.cancelled, "handler cancelled")
            } catch {
                status = GRPCStatus(.unknown, "handler failed: \(error)")
            }
            channel.setTrailers(status, call.trailingMetadata)
        }
        var timer: Task<Void, Never>?
        if let timeout {
            timer = Task {
                do { try await Task.sleep(for: timeout) } catch { return }
                let status = GRPCStatus(.deadlineExceeded, "deadline exceeded")
                channel.setTrailers(status, GRPCMetadata())
                channel.fail(status, cancelTask: true)
            }
        }
        // A reset or deadline that arrived before the handles were stored still cancels them.
        let endedAlready = channel.state.withLock { s -> Bool in
            s.task = task
            s.timer = timer
            return s.terminal != nil
        }
        if endedAlready {
            task.cancel()
            timer?.cancel()
        }
    }

    // MARK: - Sending

    func serviceStream(_ streamID: Int32, runner: LoopRunner) {
        guard !self.isClosed, let stream = self.streams[streamID] else { return }
        self.service(stream)
        self.flush(runner: runner)
    }

    private func service(_ stream: ServerStream) {
        guard let session = self.session, let channel = stream.channel else { return }
        let (hasOutbound, headersRequested, initial, trailers) = channel.state.withLock { s in
            s.wakePending = false
            return (s.outboundBytes > 0, s.headersRequested, s.initialMetadata, s.trailers)
        }
        if stream.owed > 0 && channel.windowMayReopen(partial: stream.deframer.partialBytes) {
            NGHTTP2Calls.consume(session, streamID: stream.id, bytes: stream.owed)
            stream.owed = 0
        }
        if stream.trailersSubmitted { return }
        if !stream.responseStarted {
            if let (status, metadata) = trailers, !hasOutbound, !headersRequested {
                stream.responseStarted = true
                stream.trailersSubmitted = true
                var headers = [(":status", "200"), ("content-type", "application/grpc")]
                headers += self.statusHeaders(status, metadata)
                self.submitResponse(stream, headers: headers, endStream: true)
            } else if hasOutbound || headersRequested || trailers != nil {
                stream.responseStarted = true
                var headers = [
                    (":status", "200"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity"),
                ]
                if let initial { headers += initial.wirePairs }
                self.submitResponse(stream, headers: headers, endStream: false)
            }
        } else if stream.deferred && (hasOutbound || trailers != nil) {
            stream.deferred = false
            NGHTTP2Calls.resumeData(session, streamID: stream.id)
        }
    }

    /// Client input quoted in a status message: at most 256 bytes of it.
    static func quoted(_ text: String) -> String {
        text.utf8.count <= 256 ? text : String(decoding: text.utf8.prefix(256), as: UTF8.self) + "..."
    }

    /// Largest status header block we send: the client's SETTINGS_MAX_HEADER_LIST_SIZE, at most 8 KiB (gRPC's
    /// suggested limit), counted as HPACK does (name + value + 32 per field), with room for `:status` and
    /// `content-type`.
    private var statusHeaderLimit: Int {
        let peer = self.session.map(NGHTTP2Calls.remoteMaxHeaderListSize) ?? Int(UInt32.max)
        return min(peer, 8 << 10) - 128
    }

    /// `grpc-status`, a capped `grpc-message` and the trailing metadata that fits the status header limit (the
    /// rest is dropped, so the status always reaches the client).
    func statusHeaders(_ status: GRPCStatus, _ metadata: GRPCMetadata) -> [(String, String)] {
        Self.statusHeaders(status, metadata, limit: self.statusHeaderLimit)
    }

    static func statusHeaders(_ status: GRPCStatus, _ metadata: GRPCMetadata, limit: Int = 8 << 10)
        -> [(String, String)]
    {
        var headers = [("grpc-status", String(status.code.rawValue))]
        var size = 11 + headers[0].1.utf8.count + 32
        if !status.message.isEmpty {
            let room = max(64, min(GRPCMessageEncoding.maxEncodedLength, limit - size - 12 - 32))
            let encoded = GRPCMessageEncoding.encode(status.message, limit: room)
            headers.append(("grpc-message", encoded))
            size += 12 + encoded.utf8.count + 32
        }
        for pair in metadata.wirePairs {
            let cost = pair.0.utf8.count + pair.1.utf8.count + 32
            if size + cost > limit { continue }
            size += cost
            headers.append(pair)
        }
        return headers
    }

    override func readData(streamID: Int32, maxLength: Int, flags: inout UInt32) -> Int {
        guard let session = self.session, let stream = self.streams[streamID], let channel = stream.channel else {
            return Int(NGHTTP2Calls.errTemporalCallbackFailure)
        }
        let (available, trailers) = channel.state.withLock { s in (s.outboundBytes, s.trailers) }
        if available > 0 {
            let n = min(available, maxLength)
            flags |= NGHTTP2Calls.dataFlagNoCopy
            if n == available, let (status, metadata) = trailers {
                // Without trailers the stream would hang: a failure resets it (TEMPORAL_CALLBACK_FAILURE).
                guard
                    NGHTTP2Calls.submitTrailer(
                        session, streamID: streamID, headers: self.statusHeaders(status, metadata)) == .submitted
                else { return Int(NGHTTP2Calls.errTemporalCallbackFailure) }
                flags |= NGHTTP2Calls.dataFlagEOF | NGHTTP2Calls.dataFlagNoEndStream
                stream.trailersSubmitted = true
            }
            return n
        }
        if let (status, metadata) = trailers {
            guard
                NGHTTP2Calls.submitTrailer(session, streamID: streamID, headers: self.statusHeaders(status, metadata))
                    == .submitted
            else { return Int(NGHTTP2Calls.errTemporalCallbackFailure) }
            flags |= NGHTTP2Calls.dataFlagEOF | NGHTTP2Calls.dataFlagNoEndStream
            stream.trailersSubmitted = true
            return 0
        }
        stream.deferred = true
        return NGHTTP2Calls.errDeferred
    }

    override func sendData(streamID: Int32, frameHeader: UnsafeRawBufferPointer, length: Int, padding: Int) -> Int32 {
        guard let stream = self.streams[streamID], let channel = stream.channel else {
            return NGHTTP2Calls.errCallbackFailure
        }
        if self.outputFull { return NGHTTP2Calls.errWouldBlock }
        self.appendCopy(frameHeader)
        if padding > 0 { self.appendSlice([UInt8(padding - 1)][...]) }
        channel.takeOutbound(length) { self.appendSlice($0) }
        if padding > 1 { self.appendSlice([UInt8](repeating: 0, count: padding - 1)[...]) }
        return 0
    }
}
