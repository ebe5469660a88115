/// The request/response cycle of one HTTP/1.1 connection, without I/O: feed it received bytes and the time,
/// and it says what to do next. Requests are handled one at a time (a pipelined request waits, buffered within
/// the limits, until the response before it was sent).
public struct HTTP1Connection: Sendable {
    /// What the owner of the socket must do.
    public enum Action: Sendable, Equatable {
        /// Handle this request, then call ``responseSent(keepAlive:now:)``.
        case handle(HTTP1Request)
        /// Send this refusal (status and text) and close the connection.
        case refuse(HTTP1Error)
        /// Close the connection without answering (idle keep-alive timeout, or a peer that sent too much).
        case close
    }

    /// The limits of each request.
    public let limits: HTTP1Limits
    /// A request must be complete this long after its first byte arrived (default 10 s; 408 beyond it).
    public let headerTimeout: Duration
    /// A kept-alive connection without a request for this long is closed (default 60 s).
    public let idleTimeout: Duration
    private var buffer: [UInt8] = []
    private var handling = false
    private var finished = false
    /// When the first byte of the request being received arrived.
    private var requestStarted: ContinuousClock.Instant?
    private var idleSince: ContinuousClock.Instant

    /// Most bytes held unconsumed: one request at its limits plus one read's worth.
    public var maxBuffered: Int {
        let (a, o1) = self.limits.requestLine.addingReportingOverflow(self.limits.headerBytes)
        let (b, o2) = a.addingReportingOverflow(self.limits.body)
        let (c, o3) = b.addingReportingOverflow(64 << 10)
        return o1 || o2 || o3 ? Int.max : c
    }

    /// A connection that has received nothing yet, at `now`.
    public init(limits: HTTP1Limits = HTTP1Limits(), headerTimeout: Duration = .seconds(10),
                idleTimeout: Duration = .seconds(60), now: ContinuousClock.Instant = .now) {
        self.limits = limits
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.idleSince = now
    }

    /// Bytes received and not yet consumed by a request.
    public var bufferedBytes: Int { self.buffer.count }

    /// Appends received bytes and returns the next action, if any.
    public mutating func receive(_ bytes: UnsafeRawBufferPointer, now: ContinuousClock.Instant) -> Action? {
        guard !self.finished else { return nil }
        if !bytes.isEmpty, self.requestStarted == nil { self.requestStarted = now }
        if self.buffer.count + bytes.count > self.maxBuffered {
            self.finished = true
            return self.handling ? .close : .refuse(.headersTooLarge("more bytes than one request may have"))
        }
        self.buffer.append(contentsOf: bytes)
        return self.next()
    }

    /// The response to the request being handled went out; returns the next action (a pipelined request).
    public mutating func responseSent(keepAlive: Bool, now: ContinuousClock.Instant) -> Action? {
        self.handling = false
        guard keepAlive, !self.finished else {
            self.finished = true
            return .close
        }
        self.idleSince = now
        self.requestStarted = self.buffer.isEmpty ? nil : now
        return self.next()
    }

    /// Checks the timeouts.
    public mutating func tick(now: ContinuousClock.Instant) -> Action? {
        guard !self.finished, !self.handling else { return nil }
        if let started = self.requestStarted, now - started > self.headerTimeout {
            self.finished = true
            return .refuse(.timeout)
        }
        if self.requestStarted == nil, now - self.idleSince > self.idleTimeout {
            self.finished = true
            return .close
        }
        return nil
    }

    /// Whether a request is being handled (its response not yet sent).
    public var isHandling: Bool { self.handling }

    private mutating func next() -> Action? {
        guard !self.handling, !self.finished, !self.buffer.isEmpty else { return nil }
        do throws(HTTP1Error) {
            guard let (request, consumed) = try HTTP1Parser.parse(self.buffer[...], limits: self.limits) else {
                return nil
            }
            self.buffer.removeFirst(consumed)
            self.handling = true
            self.requestStarted = nil
            return .handle(request)
        } catch {
            self.finished = true
            self.buffer = []
            return .refuse(error)
        }
    }
}
