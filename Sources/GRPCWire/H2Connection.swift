internal import CEpoll
internal import IOLoop
internal import Glibc

/// What GRPCWire needs to know about a received frame.
struct H2FrameInfo {
    var type: UInt8
    var flags: UInt8
    var streamID: Int32
    /// Headers category (request/response/headers) for HEADERS frames.
    var category: UInt32
    /// Error code of RST_STREAM and GOAWAY frames.
    var errorCode: UInt32
    /// Last stream id of GOAWAY frames.
    var lastStreamID: Int32

    var endStream: Bool { self.flags & NGHTTP2Calls.flagEndStream != 0 }
}

/// One HTTP/2 connection on one loop thread: its socket (optionally TLS), its nghttp2 session, and the ordered
/// queue of outgoing byte slices. Subclasses (`ServerConnection`, `ClientConnection`) add gRPC streams.
///
/// Every method runs on the owning loop thread. nghttp2 is driven (`mem_recv`/`mem_send`) only from
/// `handleEvents` and loop jobs, never from inside its callbacks.
class H2Connection: LoopHandler {
    let fd: Int32
    let loop: EventLoop
    var id: UInt64 = 0
    var session: OpaquePointer?
    var tls: TLSSession?
    private(set) var isClosed = false
    private var scratch: [UInt8] = []
    private var outQueue: [ArraySlice<UInt8>] = []
    private var outHead = 0
    /// Bytes queued for the socket and not yet written.
    private(set) var outBytes = 0
    var pollingWritable = false
    /// Stop producing frames while this many bytes wait for the socket (bounded memory for slow peers).
    let outHighWater: Int
    /// Set by callbacks when the connection must close after the current drive.
    var mustClose = false
    /// Client sockets wait for the non-blocking connect to finish before any I/O.
    var connecting = false
    /// Keepalive: PING after this much silence from the peer; close when no answer within `keepaliveTimeout`.
    var keepaliveInterval: Duration?
    var keepaliveTimeout: Duration = .seconds(20)
    private var lastReceive = ContinuousClock.now
    private var pingSentAt: ContinuousClock.Instant?
    /// Bytes received so far (after TLS), to tell a peer that never spoke HTTP/2 from one that stopped.
    private var receivedBytes = 0
    /// Where the received bytes stand in HTTP/2 framing (decides which reads go in place).
    private var frames: H2FrameBoundaries
    /// Clients explain a TLS/plain-text mismatch with the server (servers leave that to the client).
    var explainsTLSMismatch: Bool { false }

    /// - Parameter receivesPreface: whether the peer starts with the client connection preface (servers).
    init(fd: Int32, loop: EventLoop, receivesPreface: Bool, outHighWater: Int = 8 << 20) {
        self.frames = H2FrameBoundaries(server: receivesPreface)
        self.fd = fd
        self.loop = loop
        self.outHighWater = outHighWater
    }

    static let readEvents = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    static let readWriteEvents = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLOUT.rawValue

    // MARK: - Loop events

    func handleEvents(_ events: UInt32, runner: LoopRunner) {
        if self.isClosed { return }
        if events & EPOLLOUT.rawValue != 0 {
            if let tls = self.tls, !tls.isEstablished {
                self.continueHandshake(runner: runner)
                if self.isClosed { return }
            }
            self.flush(runner: runner)
            if self.isClosed { return }
        }
        if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue) != 0 {
            self.readAvailable(runner: runner)
        }
    }

    func closeForShutdown(runner: LoopRunner) {
        self.close(runner: runner, reason: GRPCStatus(.unavailable, "event loop shut down"))
    }

    /// Called after a TLS handshake completes (clients start their session here).
    func handshakeCompleted(runner: LoopRunner) {}

    func continueHandshake(runner: LoopRunner) {
        guard let tls = self.tls else { return }
        switch tls.handshake(fd: self.fd) {
        case .done:
            self.handshakeCompleted(runner: runner)
            self.flush(runner: runner)
        case .wantRead:
            self.setPollingWritable(false, runner: runner)
        case .wantWrite:
            self.setPollingWritable(true, runner: runner)
        case .failed(let reason):
            var message = "TLS handshake failed: \(reason)"
            // What OpenSSL says when the answer to its ClientHello is not TLS (an HTTP/2 server's SETTINGS).
            if self.explainsTLSMismatch,
                ["wrong version number", "packet length too long", "record layer failure", "unexpected eof"]
                    .contains(where: reason.contains)
            {
                message += " (the server does not speak TLS on this port: use grpc:// for it)"
            }
            self.close(runner: runner, reason: GRPCStatus(.unavailable, message))
        }
    }

    private func readAvailable(runner: LoopRunner) {
        if let tls = self.tls, !tls.isEstablished {
            self.continueHandshake(runner: runner)
            if self.isClosed || !tls.isEstablished { return }
        }
        var rounds = 0
        while rounds < 16 && !self.isClosed {
            rounds += 1
            let requested: Int
            let n: Int
            // The bulk of a large DATA payload goes straight into the message buffer waiting for it; the owner keeps
            // that buffer alive until nghttp2 has parsed what was read into it.
            let inPlace: (room: UnsafeMutableRawBufferPointer, owner: [UInt8])?
            if let stream = self.frames.dataStream, self.frames.payloadLeft >= Self.inPlaceMinimum,
                self.session != nil, let target = self.receiveRoom(streamID: stream),
                target.room.count >= Self.inPlaceMinimum
            {
                requested = min(target.room.count, self.frames.payloadLeft)
                n = self.receive(into: UnsafeMutableRawBufferPointer(rebasing: target.room[..<requested]))
                inPlace = target
            } else {
                inPlace = nil
                // Between large DATA payloads, read little, so the next payload's bulk is still left for its buffer.
                requested = self.frames.largeDataFlow ? Self.shortRead : runner.readBuffer.count
                n = runner.readBuffer.withUnsafeMutableBytes {
                    self.receive(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<requested]))
                }
            }
            if n == -2 { break }
            if n > 0 {
                self.lastReceive = ContinuousClock.now
                self.pingSentAt = nil
            }
            if n <= 0 {
                var message = n == 0 ? "connection closed by peer" : "read failed"
                if self.explainsTLSMismatch && self.tls == nil && self.receivedBytes == 0 {
                    message += " before answering HTTP/2 (if the server speaks TLS on this port, use grpc+tls://)"
                }
                self.close(runner: runner, reason: GRPCStatus(.unavailable, message))
                return
            }
            // A TLS record (alert 0x15 or handshake 0x16, version 3.x) as the very first answer: the server speaks TLS.
            if inPlace == nil && self.explainsTLSMismatch && self.tls == nil && self.receivedBytes == 0 && n >= 2,
                runner.readBuffer[0] == 0x15 || runner.readBuffer[0] == 0x16, runner.readBuffer[1] == 0x03
            {
                self.close(
                    runner: runner,
                    reason: GRPCStatus(.unavailable, "the server speaks TLS on this port: use grpc+tls:// for it"))
                return
            }
            self.receivedBytes &+= n
            self.noteReceived(n, inPlace: inPlace != nil)
            guard let session = self.session else { return }
            let failed: Int32?
            if let target = inPlace {
                self.frames.advancePayload(n)
                failed = withExtendedLifetime(target.owner) {
                    NGHTTP2Calls.memRecv(session, UnsafeRawBufferPointer(rebasing: target.room[..<n]))
                }
            } else {
                // Callbacks copy what they keep: the loop's shared buffer is reused by the next read.
                failed = runner.readBuffer.withUnsafeBytes { buf in
                    let bytes = UnsafeRawBufferPointer(rebasing: buf[0..<n])
                    self.frames.advance(bytes)
                    return NGHTTP2Calls.memRecv(session, bytes)
                }
            }
            if let code = failed {
                self.protocolFailure(code: code, runner: runner)
                return
            }
            self.afterReceive(runner: runner)
            self.flush(runner: runner)
            if n < requested && self.tls == nil { break }
        }
    }

    /// Reads from the socket (or TLS) into `buffer`: the byte count, 0 at end of stream, -2 when nothing is
    /// available now, -1 on failure.
    private func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        if let tls = self.tls { return tls.read(fd: self.fd, into: buffer) }
        let r = Glibc.read(self.fd, buffer.baseAddress, buffer.count)
        if r < 0 { return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -2 : -1 }
        return r
    }

    /// The smallest read worth making in place (smaller remainders are copied from the loop's buffer).
    static let inPlaceMinimum = 16 << 10
    /// Reads between large DATA payloads: a frame header, a message prefix, and the start of the payload.
    static let shortRead = 16 << 10

    /// Hook: `count` bytes were received (after TLS), read straight into a message buffer when `inPlace`.
    func noteReceived(_ count: Int, inPlace: Bool) {}

    /// Hook: the free room of the message buffer that stream `streamID`'s next DATA bytes belong to, with the
    /// buffer itself (see ``MessageDeframer/receiveRoom(charge:)``); nil reads them into the loop's buffer.
    func receiveRoom(streamID: Int32) -> (room: UnsafeMutableRawBufferPointer, owner: [UInt8])? { nil }

    /// A TLS handshake (or, on servers, the HTTP/2 preface) not finished after this long closes the connection.
    var handshakeTimeout: Duration = .seconds(10)
    /// Servers: no frame received from the client yet (its preface is still missing).
    var awaitingPreface = false
    let createdAt = ContinuousClock.now

    func tick(now: ContinuousClock.Instant, runner: LoopRunner) {
        if let tls = self.tls, !tls.isEstablished, !self.isClosed, now - self.createdAt > self.handshakeTimeout {
            self.close(runner: runner, reason: GRPCStatus(.unavailable, "TLS handshake timed out"))
            return
        }
        if self.awaitingPreface, !self.isClosed, now - self.createdAt > self.handshakeTimeout {
            self.close(
                runner: runner, reason: GRPCStatus(.unavailable, "no HTTP/2 preface within the handshake timeout"))
            return
        }
        guard let interval = self.keepaliveInterval, !self.isClosed, !self.connecting, let session = self.session else {
            return
        }
        if let sent = self.pingSentAt {
            if now - sent > self.keepaliveTimeout {
                self.close(runner: runner, reason: GRPCStatus(.unavailable, "keepalive PING not answered"))
            }
            return
        }
        if now - self.lastReceive >= interval {
            self.pingSentAt = now
            NGHTTP2Calls.submitPing(session)
            self.flush(runner: runner)
        }
    }

    /// Hook after each `mem_recv` (subclasses process work queued by callbacks).
    func afterReceive(runner: LoopRunner) {}

    /// A malformed or flooding peer: try to send GOAWAY (PROTOCOL_ERROR, or ENHANCE_YOUR_CALM for floods), then
    /// close.
    func protocolFailure(code: Int32, runner: LoopRunner) {
        if let session = self.session {
            let error = code == NGHTTP2Calls.errFlooded ? NGHTTP2Calls.errorEnhanceYourCalm : NGHTTP2Calls.errorProtocol
            NGHTTP2Calls.terminate(session, errorCode: error)
            self.flush(runner: runner, closing: true)
        }
        self.close(runner: runner, reason: GRPCStatus(.unavailable, "HTTP/2 error: \(NGHTTP2Calls.errorText(code))"))
    }

    // MARK: - Output

    /// Appends bytes produced by nghttp2 (copied: nghttp2 reuses its buffer).
    func appendCopy(_ bytes: UnsafeRawBufferPointer) {
        // Allocated on first use: an idle connection holds no output buffer.
        if self.scratch.capacity == 0 { self.scratch.reserveCapacity(16 << 10) }
        self.scratch.append(contentsOf: bytes)
        if self.scratch.count >= 64 << 10 { self.flushScratch() }
    }

    private func flushScratch() {
        guard !self.scratch.isEmpty else { return }
        self.outBytes += self.scratch.count
        self.outQueue.append(self.scratch[...])
        self.scratch = []
    }

    /// Appends a slice without copying, after everything queued so far.
    func appendSlice(_ slice: ArraySlice<UInt8>) {
        guard !slice.isEmpty else { return }
        if slice.count <= 1024 {
            if self.scratch.capacity == 0 { self.scratch.reserveCapacity(16 << 10) }
            self.scratch.append(contentsOf: slice)
            return
        }
        self.flushScratch()
        self.outBytes += slice.count
        self.outQueue.append(slice)
    }

    /// Produces frames and writes them until nghttp2 has nothing more or the socket is full.
    func flush(runner: LoopRunner, closing: Bool = false) {
        guard !self.isClosed, !self.connecting, let session = self.session else { return }
        if let tls = self.tls, !tls.isEstablished { return }
        while true {
            var produced = false
            while self.outBytes + self.scratch.count < self.outHighWater {
                let rv = NGHTTP2Calls.memSend(session) { self.appendCopy($0) }
                guard let rv else { break }
                if rv < 0 {
                    if !closing {
                        self.close(
                            runner: runner,
                            reason: GRPCStatus(.internal, "nghttp2 send failed: \(NGHTTP2Calls.errorText(rv))"))
                    }
                    return
                }
                if rv == 0 { break }
                produced = true
            }
            self.flushScratch()
            var wrote = false
            if self.outBytes > 0 {
                let outcome = self.writeQueued()
                if outcome < 0 {
                    self.close(runner: runner, reason: GRPCStatus(.unavailable, "write failed"))
                    return
                }
                if self.outBytes > 0 {
                    self.setPollingWritable(true, runner: runner)
                    return
                }
                wrote = true
            }
            // A DATA frame refused with WOULDBLOCK (queue full) is retried once the queue drained.
            if !produced && !wrote { break }
        }
        self.setPollingWritable(false, runner: runner)
        if closing { return }
        if self.mustClose || (!NGHTTP2Calls.wantRead(session) && !NGHTTP2Calls.wantWrite(session) && self.outBytes == 0)
        {
            self.close(runner: runner, reason: GRPCStatus(.unavailable, "connection finished"))
        } else {
            self.afterFlush(runner: runner)
        }
    }

    /// Whether the output queue is full: send-data callbacks answer WOULDBLOCK so one `mem_send` cannot
    /// drain a stream's whole backlog into memory.
    var outputFull: Bool { self.outBytes + self.scratch.count >= self.outHighWater }

    /// Hook after a flush drained the output queue.
    func afterFlush(runner: LoopRunner) {}

    func setPollingWritable(_ on: Bool, runner: LoopRunner) {
        guard on != self.pollingWritable, !self.isClosed else { return }
        self.pollingWritable = on
        runner.modify(fd: self.fd, id: self.id, events: on ? Self.readWriteEvents : Self.readEvents)
    }

    /// Writes queued slices with `writev` (or TLS); returns -1 on a fatal error, else 0.
    private func writeQueued() -> Int {
        while self.outBytes > 0 {
            let written: Int
            if let tls = self.tls {
                written = self.outQueue[self.outHead].withUnsafeBytes { tls.write(fd: self.fd, $0) }
            } else {
                written = self.writevQueued()
            }
            if written == -2 { return 0 }
            if written < 0 { return -1 }
            self.consumeOutput(written)
        }
        self.outQueue.removeAll(keepingCapacity: true)
        self.outHead = 0
        return 0
    }

    private func writevQueued() -> Int {
        let count = min(64, self.outQueue.count - self.outHead)
        let r = IOVectors.with(self.outQueue[self.outHead..<(self.outHead + count)]) { vectors -> Int in
            var msg = msghdr()
            msg.msg_iov = UnsafeMutablePointer(mutating: vectors.baseAddress)
            msg.msg_iovlen = vectors.count
            return sendmsg(self.fd, &msg, Int32(MSG_NOSIGNAL))
        }
        if r < 0 { return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -2 : -1 }
        return r
    }

    private func consumeOutput(_ n: Int) {
        var left = n
        self.outBytes -= n
        while left > 0 {
            let head = self.outQueue[self.outHead]
            if head.count <= left {
                left -= head.count
                self.outQueue[self.outHead] = []
                self.outHead += 1
            } else {
                self.outQueue[self.outHead] = head.dropFirst(left)
                left = 0
            }
        }
        if self.outHead > 256 {
            self.outQueue.removeFirst(self.outHead)
            self.outHead = 0
        }
    }

    // MARK: - Close

    /// Closes the socket and session; subclasses fail their streams in `connectionClosed`.
    func close(runner: LoopRunner, reason: GRPCStatus) {
        guard !self.isClosed else { return }
        self.isClosed = true
        runner.unregister(fd: self.fd, id: self.id)
        self.tls?.shutdown(fd: self.fd)
        _ = Glibc.close(self.fd)
        if let session = self.session {
            self.session = nil
            NGHTTP2Calls.deleteSession(session)
        }
        self.outQueue = []
        self.outBytes = 0
        self.scratch = []
        self.connectionClosed(reason: reason)
    }

    /// Hook: the connection is gone.
    func connectionClosed(reason: GRPCStatus) {}

    // MARK: - nghttp2 callbacks (overridden by subclasses)

    func onBeginHeaders(streamID: Int32, category: UInt32) -> Int32 { 0 }
    func onHeader(
        streamID: Int32, category: UInt32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>
    ) -> Int32 { 0 }
    func onFrameRecv(_ frame: H2FrameInfo) -> Int32 { 0 }
    func onDataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 { 0 }
    func onStreamClose(streamID: Int32, errorCode: UInt32) -> Int32 { 0 }
    func onFrameSend(type: UInt8, flags: UInt8, streamID: Int32) {}
    func onFrameNotSent(type: UInt8, streamID: Int32, errorCode: Int32) {}
    func readData(streamID: Int32, maxLength: Int, flags: inout UInt32) -> Int { NGHTTP2Calls.errDeferred }
    func sendData(streamID: Int32, frameHeader: UnsafeRawBufferPointer, length: Int, padding: Int) -> Int32 {
        NGHTTP2Calls.errCallbackFailure
    }
}
