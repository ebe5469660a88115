internal import CEpoll
internal import IOLoop
internal import Glibc
import Synchronization

/// Loop-side state of one client call.
final class ClientCallRecord {
    let key: Int
    let channel: StreamChannel
    let headers: [(String, String)]
    var streamID: Int32 = -1
    var deframer: MessageDeframer
    var owed = 0
    var deferred = false
    var httpStatus: Int?
    var responseMetadata = GRPCMetadata()
    var trailerMetadata = GRPCMetadata()
    var grpcStatus: String?
    var grpcMessage: [UInt8]?
    var sawResponseHeaders = false
    var done = false

    init(key: Int, channel: StreamChannel, headers: [(String, String)], maxMessageSize: Int) {
        self.key = key
        self.channel = channel
        self.headers = headers
        self.deframer = MessageDeframer(maxMessageSize: maxMessageSize)
    }
}

/// A client-side HTTP/2 connection carrying many calls.
final class ClientConnection: H2Connection {
    let configuration: GRPCClientConfiguration
    override var explainsTLSMismatch: Bool { true }
    private var byKey: [Int: ClientCallRecord] = [:]
    private var byStream: [Int32: ClientCallRecord] = [:]
    private var pending: [ClientCallRecord] = []
    private(set) var goawayReceived = false
    private let tlsContext: TLSContext?
    /// The channel core that routes wake-ups by call key; told when calls end.
    weak var core: ClientChannelCore?

    init(fd: Int32, loop: EventLoop, configuration: GRPCClientConfiguration, tlsContext: TLSContext?) {
        self.configuration = configuration
        self.tlsContext = tlsContext
        super.init(fd: fd, loop: loop, receivesPreface: false)
        self.connecting = true
    }

    /// Starts a non-blocking connect to `address` (resolved off the loop) and the client session.
    static func connect(
        to address: SocketAddress, runner: LoopRunner, configuration: GRPCClientConfiguration, tlsContext: TLSContext?
    ) throws(GRPCWireError) -> ClientConnection {
        let fd: Int32
        do {
            fd = try SocketCalls.connect(address)
        } catch {
            throw GRPCWireError(error)
        }
        let conn = ClientConnection(fd: fd, loop: runner.loop, configuration: configuration, tlsContext: tlsContext)
        conn.keepaliveInterval = configuration.keepaliveInterval
        conn.keepaliveTimeout = configuration.keepaliveTimeout
        do throws(GRPCWireError) {
            conn.session = try NGHTTP2Calls.makeSession(
                server: false, owner: conn,
                settings: .init(
                    maxConcurrentStreams: 1000, initialWindowSize: configuration.streamWindowSize,
                    maxFrameSize: configuration.maxFrameSize, maxHeaderListSize: 16 << 10,
                    connectionWindowSize: configuration.connectionWindowSize, enablePush: false))
            do {
                conn.id = try runner.register(fd: fd, events: H2Connection.readWriteEvents, handler: conn)
            } catch {
                throw GRPCWireError(error)
            }
            conn.pollingWritable = true
        } catch {
            if let s = conn.session { NGHTTP2Calls.deleteSession(s) }
            conn.session = nil
            _ = SocketCalls.close(fd)
            throw error
        }
        return conn
    }

    /// Whether new calls may use this connection.
    var isUsable: Bool { !self.isClosed && !self.goawayReceived }

    override func handleEvents(_ events: UInt32, runner: LoopRunner) {
        guard self.connecting else {
            super.handleEvents(events, runner: runner)
            return
        }
        let err = SocketCalls.pendingError(self.fd)
        if err != 0 || events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
            let text = err != 0 ? String(cString: strerror(err)) : "connection failed"
            self.close(
                runner: runner,
                reason: GRPCStatus(
                    .unavailable, "connect to \(self.configuration.host):\(self.configuration.port) failed: \(text)"))
            return
        }
        guard events & EPOLLOUT.rawValue != 0 else { return }
        self.connecting = false
        if let ctx = self.tlsContext {
            do {
                self.tls = try TLSSession(context: ctx, fd: self.fd, hostForClient: self.configuration.host)
            } catch {
                self.close(runner: runner, reason: GRPCStatus(.unavailable, GRPCWireError(error).description))
                return
            }
            self.continueHandshake(runner: runner)
            if self.isClosed { return }
        }
        for record in self.pending { self.submit(record) }
        self.pending = []
        self.flush(runner: runner)
    }

    /// Adds a call (loop thread).
    func start(_ record: ClientCallRecord, runner: LoopRunner) {
        self.byKey[record.key] = record
        if self.connecting {
            self.pending.append(record)
            return
        }
        self.submit(record)
        self.flush(runner: runner)
    }

    private func submit(_ record: ClientCallRecord) {
        guard let session = self.session else {
            self.finish(record, GRPCStatus(.unavailable, "connection closed"), failInbound: true)
            return
        }
        let sid = NGHTTP2Calls.submitRequest(session, headers: record.headers)
        guard sid > 0 else {
            self.finish(
                record, GRPCStatus(.unavailable, "cannot open stream: \(NGHTTP2Calls.errorText(sid))"),
                failInbound: true)
            return
        }
        record.streamID = sid
        self.byStream[sid] = record
    }

    override func connectionClosed(reason: GRPCStatus) {
        let all = Array(self.byKey.values)
        self.byKey = [:]
        self.byStream = [:]
        self.pending = []
        for r in all where !r.done {
            self.finish(r, GRPCStatus(.unavailable, reason.message), failInbound: true)
        }
    }

    /// Records the final status and wakes the call's waiters.
    private func finish(
        _ record: ClientCallRecord, _ status: GRPCStatus, failInbound: Bool, metadata: GRPCMetadata = GRPCMetadata()
    ) {
        guard !record.done else { return }
        record.done = true
        record.channel.setFinalStatus(status, metadata)
        self.core?.callConnection[record.key] = nil
        if failInbound {
            record.channel.fail(status, cancelTask: false)
        } else {
            record.channel.finishInbound()
        }
        self.byKey[record.key] = nil
    }

    // MARK: - Receiving

    override func onHeader(
        streamID: Int32, category: UInt32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>
    ) -> Int32 {
        guard let r = self.byStream[streamID] else { return 0 }
        let key = String(decoding: name, as: UTF8.self)
        switch key {
        case ":status": r.httpStatus = Int(String(decoding: value, as: UTF8.self))
        case "grpc-status": r.grpcStatus = String(decoding: value, as: UTF8.self)
        case "grpc-message": r.grpcMessage = Array(value)
        default:
            if GRPCMetadata.isReserved(key) { return 0 }
            if category == NGHTTP2Calls.hcatResponse {
                r.responseMetadata.addWire(name: key, value: ArraySlice(value))
            } else {
                r.trailerMetadata.addWire(name: key, value: ArraySlice(value))
            }
        }
        return 0
    }

    override func onFrameRecv(_ frame: H2FrameInfo) -> Int32 {
        if frame.type == NGHTTP2Calls.frameGoaway {
            self.goawayReceived = true
            return 0
        }
        guard let r = self.byStream[frame.streamID] else { return 0 }
        if frame.type == NGHTTP2Calls.frameHeaders && frame.category == NGHTTP2Calls.hcatResponse {
            r.sawResponseHeaders = true
            r.channel.setResponseHeaders(r.responseMetadata)
        }
        if (frame.type == NGHTTP2Calls.frameHeaders || frame.type == NGHTTP2Calls.frameData) && frame.endStream {
            self.completeFromHeaders(r)
        }
        return 0
    }

    private func completeFromHeaders(_ r: ClientCallRecord) {
        let status: GRPCStatus
        var metadata = r.trailerMetadata
        if let code = r.grpcStatus {
            status = GRPCStatus(
                GRPCStatus.code(fromHeader: code), r.grpcMessage.map { GRPCMessageEncoding.decode($0) } ?? "")
            if metadata.isEmpty && !r.sawResponseHeaders { metadata = r.responseMetadata }
        } else {
            status = GRPCStatus.fromHTTPStatus(r.httpStatus ?? 0)
        }
        if status.code == .ok && r.deframer.hasPartialMessage {
            self.finish(r, GRPCStatus(.internal, "response ended inside a message"), failInbound: true)
            return
        }
        if !r.sawResponseHeaders { r.channel.setResponseHeaders(r.responseMetadata) }
        self.finish(r, status, failInbound: false, metadata: metadata)
    }

    override func receiveRoom(streamID: Int32) -> (room: UnsafeMutableRawBufferPointer, owner: [UInt8])? {
        guard let r = self.byStream[streamID], !r.done else { return nil }
        return r.deframer.receiveRoom(charge: { _ in true })
    }

    override func onDataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let session = self.session else { return 0 }
        guard let r = self.byStream[streamID], !r.done else {
            NGHTTP2Calls.consume(session, streamID: streamID, bytes: data.count)
            return 0
        }
        let channel = r.channel
        do {
            try r.deframer.feed(data.bindMemory(to: UInt8.self)) { message, _ in channel.deliver(message) }
        } catch {
            NGHTTP2Calls.consume(session, streamID: streamID, bytes: data.count)
            let status: GRPCStatus
            switch error {
            case .messageTooLarge(let length, let limit):
                status = GRPCStatus(.resourceExhausted, "received message larger than max (\(length) vs. \(limit))")
            default: status = GRPCStatus(.internal, error.description)
            }
            NGHTTP2Calls.submitReset(session, streamID: streamID, errorCode: NGHTTP2Calls.errorCancel)
            self.finish(r, status, failInbound: true)
            return 0
        }
        r.owed += data.count
        if channel.queuedInboundBytes < channel.inboundLimit {
            NGHTTP2Calls.consume(session, streamID: streamID, bytes: r.owed)
            r.owed = 0
        }
        return 0
    }

    override func onStreamClose(streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let r = self.byStream.removeValue(forKey: streamID) else { return 0 }
        if !r.done {
            let status =
                errorCode == NGHTTP2Calls.errorNoError
                ? GRPCStatus(.internal, "stream closed without a status")
                : GRPCStatus.fromResetCode(errorCode)
            self.finish(r, status, failInbound: true)
        }
        self.byKey[r.key] = nil
        return 0
    }

    // MARK: - Sending

    func serviceCall(_ key: Int, runner: LoopRunner) {
        guard let r = self.byKey[key], let session = self.session else { return }
        let (hasOutbound, finished, cancel, queued) = r.channel.state.withLock { s in
            s.wakePending = false
            return (s.outboundBytes > 0, s.outboundFinished, s.cancelRequested, s.inboundBytes)
        }
        if cancel {
            if r.streamID > 0 {
                NGHTTP2Calls.submitReset(session, streamID: r.streamID, errorCode: NGHTTP2Calls.errorCancel)
            }
            self.finish(r, GRPCStatus(.cancelled, "call cancelled"), failInbound: true)
            self.pending.removeAll { $0 === r }
            self.flush(runner: runner)
            return
        }
        if r.owed > 0 && queued < r.channel.inboundLimit && r.streamID > 0 {
            NGHTTP2Calls.consume(session, streamID: r.streamID, bytes: r.owed)
            r.owed = 0
        }
        if r.deferred && (hasOutbound || finished) && r.streamID > 0 {
            r.deferred = false
            NGHTTP2Calls.resumeData(session, streamID: r.streamID)
        }
        self.flush(runner: runner)
    }

    override func readData(streamID: Int32, maxLength: Int, flags: inout UInt32) -> Int {
        guard let r = self.byStream[streamID] else { return Int(NGHTTP2Calls.errTemporalCallbackFailure) }
        let (available, finished) = r.channel.state.withLock { s in (s.outboundBytes, s.outboundFinished) }
        if available > 0 {
            let n = min(available, maxLength)
            flags |= NGHTTP2Calls.dataFlagNoCopy
            if n == available && finished { flags |= NGHTTP2Calls.dataFlagEOF }
            return n
        }
        if finished {
            flags |= NGHTTP2Calls.dataFlagEOF
            return 0
        }
        r.deferred = true
        return NGHTTP2Calls.errDeferred
    }

    override func sendData(streamID: Int32, frameHeader: UnsafeRawBufferPointer, length: Int, padding: Int) -> Int32 {
        guard let r = self.byStream[streamID] else { return NGHTTP2Calls.errCallbackFailure }
        if self.outputFull { return NGHTTP2Calls.errWouldBlock }
        self.appendCopy(frameHeader)
        if padding > 0 { self.appendSlice([UInt8(padding - 1)][...]) }
        r.channel.takeOutbound(length) { self.appendSlice($0) }
        if padding > 1 { self.appendSlice([UInt8](repeating: 0, count: padding - 1)[...]) }
        return 0
    }
}
