internal import CEpoll
internal import Glibc
internal import IOLoop
import Synchronization

/// Serves the connections of a ``GRPCServer`` that do not begin with the HTTP/2 client preface (an HTTP/1.1
/// client on the gRPC port). GRPCWire only tells the protocols apart (by the first bytes, peeked without reading
/// them; with TLS, by ALPN: `h2` is gRPC, `http/1.1` or none is HTTP/1.1) and moves bytes; the handler parses and
/// answers.
public protocol HTTP1ConnectionHandler: Sendable {
    /// A new non-HTTP/2 connection, called on its loop thread; returns the session that gets its bytes.
    func connectionOpened(_ connection: RawConnection) -> any RawConnectionSession
}

/// One connection's byte consumer. Every method is called on the connection's loop thread, one at a time; none
/// may block.
public protocol RawConnectionSession: AnyObject {
    /// Bytes received; valid only during the call (copy what you keep).
    func received(_ bytes: UnsafeRawBufferPointer)
    /// What ``RawConnection/send(_:thenClose:)`` queued is within the connection's output bound again (the
    /// session may produce the next response).
    func sendQueued()
    /// About every 50 ms (timeouts).
    func tick(now: ContinuousClock.Instant)
    /// The server shuts down: close once the response in progress (if any) was sent.
    func drain()
    /// The connection is closed (by the peer, an error, ``RawConnection/close()`` or shutdown).
    func closed()
}

/// The sending side of a non-HTTP/2 connection; usable from any thread.
public final class RawConnection: Sendable {
    let loop: EventLoop
    let handlerID: UInt64
    /// The peer's IP address (without the port).
    public let peer: String

    init(loop: EventLoop, handlerID: UInt64, peer: String) {
        self.loop = loop
        self.handlerID = handlerID
        self.peer = peer
    }

    /// Queues `bytes` for the socket (in order with earlier sends), then closes when `thenClose` once they are
    /// written. The session's ``RawConnectionSession/sendQueued()`` follows on the loop thread when the output
    /// queue is under its bound (1 MiB) again.
    public func send(_ bytes: [UInt8], thenClose: Bool = false) {
        let id = self.handlerID
        self.loop.execute { runner in
            (runner.handler(id) as? SniffedConnection)?.enqueue(bytes, thenClose: thenClose, runner: runner)
        }
    }

    /// Closes the connection at once (queued bytes not yet written are dropped).
    public func close() {
        let id = self.handlerID
        self.loop.execute { runner in
            (runner.handler(id) as? SniffedConnection)?.close(runner: runner)
        }
    }
}

/// What the listener and `shutdown` ask of any server-side connection.
protocol ServerSideConnection: AnyObject {
    /// Closed at the connection cap (it is still in its handshake).
    func evict(runner: LoopRunner)
    /// The server shuts down.
    func beginDrain(runner: LoopRunner)
}

extension ServerConnection: ServerSideConnection {}

/// A new connection of a server with an HTTP/1.1 handler. Plain text: peeks at the first bytes; the HTTP/2 preface
/// hands the socket to a ``ServerConnection`` (nothing was read, nghttp2 sees the whole preface), anything else
/// goes to the HTTP/1.1 handler's session. TLS: runs the handshake; ALPN `h2` hands the established session to a
/// ``ServerConnection``, `http/1.1` (or no ALPN) goes to the handler.
final class SniffedConnection: LoopHandler, ServerSideConnection {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    /// Most bytes queued for the socket before the session is told to wait.
    static let outputBound = 1 << 20

    private enum Phase {
        case sniffing
        case http1(any RawConnectionSession)
        case closed
    }

    let fd: Int32
    let shared: ServerShared
    let key: Int
    let peer: PeerAddress
    var id: UInt64 = 0
    private let createdAt = ContinuousClock.now
    private var phase = Phase.sniffing
    private var events = H2Connection.readEvents
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var closeAfterOutput = false
    private var sessionWaiting = false
    private var tls: TLSSession?

    private init(fd: Int32, shared: ServerShared, key: Int, peer: PeerAddress) {
        self.fd = fd
        self.shared = shared
        self.key = key
        self.peer = peer
    }

    static func start(fd: Int32, runner: LoopRunner, shared: ServerShared, key: Int, peer: PeerAddress) {
        let conn = SniffedConnection(fd: fd, shared: shared, key: key, peer: peer)
        do {
            if let context = shared.tlsContext { conn.tls = try TLSSession(context: context, fd: fd, hostForClient: nil) }
            conn.id = try runner.register(fd: fd, events: conn.events, handler: conn)
        } catch {
            _ = closeFD(fd)
            shared.connectionEnded(key: key)
            return
        }
        shared.connectionStarted(key: key, loop: runner.loop, handlerID: conn.id)
    }

    func handleEvents(_ events: UInt32, runner: LoopRunner) {
        switch self.phase {
        case .sniffing:
            if self.tls != nil { self.handshake(runner: runner) } else { self.sniff(runner: runner) }
        case .http1(let session):
            if events & EPOLLOUT.rawValue != 0 { self.writeOutput(runner: runner) }
            if case .closed = self.phase { return }
            if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue) != 0 {
                self.readAvailable(session, runner: runner)
            }
        case .closed: return
        }
    }

    /// Decides once the bytes peeked so far differ from the preface, or three of them match it.
    private func sniff(runner: LoopRunner) {
        var peeked = [UInt8](repeating: 0, count: Self.preface.count)
        let n = peeked.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, Int32(MSG_PEEK)) }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            self.close(runner: runner)
            return
        }
        if n == 0 {
            self.close(runner: runner)
            return
        }
        let matches = peeked[0..<n].elementsEqual(Self.preface[0..<n])
        if matches && n < 3 {
            // Too few bytes to tell: poll again at the next tick (level-triggered epoll would spin on them).
            self.setEvents(0, runner: runner)
            return
        }
        if matches {
            runner.unregister(fd: self.fd, id: self.id)
            self.phase = .closed
            ServerConnection.start(fd: self.fd, runner: runner, shared: self.shared, key: self.key, peer: self.peer)
            return
        }
        self.becomeHTTP1(runner: runner)
    }

    /// One step of the TLS handshake; once done, ALPN decides.
    private func handshake(runner: LoopRunner) {
        guard let tls = self.tls else { return }
        switch tls.handshake(fd: self.fd) {
        case .done:
            if tls.negotiatedHTTP1 {
                self.becomeHTTP1(runner: runner)
            } else {
                runner.unregister(fd: self.fd, id: self.id)
                self.phase = .closed
                ServerConnection.start(
                    fd: self.fd, runner: runner, shared: self.shared, key: self.key, peer: self.peer,
                    establishedTLS: tls)
            }
        case .wantRead: self.setEvents(H2Connection.readEvents, runner: runner)
        case .wantWrite: self.setEvents(H2Connection.readWriteEvents, runner: runner)
        case .failed: self.close(runner: runner)
        }
    }

    private func becomeHTTP1(runner: LoopRunner) {
        guard let handler = self.shared.configuration.http1 else {
            self.close(runner: runner)
            return
        }
        self.shared.connectionEstablished(key: self.key)
        let connection = RawConnection(loop: runner.loop, handlerID: self.id, peer: self.peer.description)
        let session = handler.connectionOpened(connection)
        self.phase = .http1(session)
        self.setEvents(H2Connection.readEvents, runner: runner)
        self.readAvailable(session, runner: runner)
    }

    private func readAvailable(_ session: any RawConnectionSession, runner: LoopRunner) {
        for _ in 0..<16 {
            guard case .http1 = self.phase else { return }
            let size = runner.readBuffer.count
            let n: Int = runner.readBuffer.withUnsafeMutableBytes { buf in
                if let tls = self.tls { return tls.read(fd: self.fd, into: buf) }
                let r = Glibc.read(self.fd, buf.baseAddress, buf.count)
                if r < 0 { return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -2 : -1 }
                return r
            }
            if n == -2 { return }
            if n <= 0 {
                self.close(runner: runner)
                return
            }
            runner.readBuffer.withUnsafeBytes { session.received(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            if n < size && self.tls == nil { return }
        }
    }

    func enqueue(_ bytes: [UInt8], thenClose: Bool, runner: LoopRunner) {
        guard case .http1(let session) = self.phase, !self.closeAfterOutput else { return }
        if self.output.isEmpty {
            self.output = bytes
            self.outputOffset = 0
        } else {
            self.output += bytes
        }
        self.closeAfterOutput = thenClose
        self.writeOutput(runner: runner)
        guard case .http1 = self.phase, !thenClose else { return }
        if self.output.count - self.outputOffset < Self.outputBound {
            session.sendQueued()
        } else {
            self.sessionWaiting = true
        }
    }

    private func writeOutput(runner: LoopRunner) {
        while self.outputOffset < self.output.count {
            let n = self.output.withUnsafeBytes { buf in
                let rest = UnsafeRawBufferPointer(rebasing: buf[self.outputOffset...])
                if let tls = self.tls { return tls.write(fd: self.fd, rest) }
                let r = send(self.fd, rest.baseAddress, rest.count, Int32(MSG_NOSIGNAL))
                if r < 0 { return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -2 : -1 }
                return r
            }
            if n < 0 {
                if n == -2 {
                    self.setEvents(H2Connection.readWriteEvents, runner: runner)
                    return
                }
                self.close(runner: runner)
                return
            }
            self.outputOffset += n
        }
        self.output = []
        self.outputOffset = 0
        self.setEvents(H2Connection.readEvents, runner: runner)
        if self.closeAfterOutput {
            self.close(runner: runner)
            return
        }
        if self.sessionWaiting, case .http1(let session) = self.phase {
            self.sessionWaiting = false
            session.sendQueued()
        }
    }

    private func setEvents(_ events: UInt32, runner: LoopRunner) {
        guard events != self.events else { return }
        self.events = events
        runner.modify(fd: self.fd, id: self.id, events: events)
    }

    func tick(now: ContinuousClock.Instant, runner: LoopRunner) {
        switch self.phase {
        case .sniffing:
            if now - self.createdAt > self.shared.configuration.handshakeTimeout {
                self.close(runner: runner)
            } else if self.events == 0 && self.tls == nil {
                self.sniff(runner: runner)
            }
        case .http1(let session): session.tick(now: now)
        case .closed: return
        }
    }

    func evict(runner: LoopRunner) { self.close(runner: runner) }

    func beginDrain(runner: LoopRunner) {
        switch self.phase {
        case .sniffing: self.close(runner: runner)
        case .http1(let session): session.drain()
        case .closed: return
        }
    }

    func closeForShutdown(runner: LoopRunner) { self.close(runner: runner) }

    func close(runner: LoopRunner) {
        let previous = self.phase
        if case .closed = previous { return }
        self.phase = .closed
        runner.unregister(fd: self.fd, id: self.id)
        self.tls?.shutdown(fd: self.fd)
        _ = Glibc.close(self.fd)
        self.output = []
        self.shared.connectionEnded(key: self.key)
        if case .http1(let session) = previous { session.closed() }
    }
}

extension PeerAddress: CustomStringConvertible {
    /// Dotted IPv4, or IPv6 as eight hexadecimal groups; `unix` for other families.
    var description: String {
        switch self.bytes.count {
        case 4: return self.bytes.map { String($0) }.joined(separator: ".")
        case 16:
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(self.bytes[$0]) << 8 | UInt16(self.bytes[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        default: return "unix"
        }
    }
}
