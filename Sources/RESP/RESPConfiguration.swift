/// How a `RESPClient` connects: endpoint, credentials, database, timeouts, reconnection and limits.
public struct RESPConfiguration: Sendable {
    /// Exponential backoff with jitter between reconnection attempts.
    public struct Reconnect: Sendable, Hashable {
        /// Attempts per (re)connection before `RESPError.reconnectFailed` (at least 1).
        public var maxAttempts: Int
        /// Delay before the second attempt; doubles after each failure up to `maxDelay`.
        public var baseDelay: Duration
        /// Largest delay between attempts.
        public var maxDelay: Duration

        /// A policy; `maxAttempts` is raised to at least 1.
        public init(maxAttempts: Int = 10, baseDelay: Duration = .milliseconds(50), maxDelay: Duration = .seconds(2)) {
            self.maxAttempts = max(1, maxAttempts)
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
        }

        /// The delay before attempt `attempt` (1-based; attempt 1 has none): full exponential delay times a
        /// random factor in [0.5, 1].
        public func delay(beforeAttempt attempt: Int) -> Duration {
            guard attempt > 1 else { return .zero }
            let exponent = min(attempt - 2, 30)
            let full = min(self.maxDelay, self.baseDelay * (1 << exponent))
            return full * Double.random(in: 0.5...1.0)
        }
    }

    /// The server address (TCP host and port, or Unix socket path).
    public var endpoint: RESPEndpoint
    /// True for `valkeys://` / `rediss://`: the connection needs `tlsStreamFactory`.
    public var useTLS: Bool
    /// Supplies TLS streams for `useTLS` (the I/O layer's OpenSSL client stream, wired by Node).
    public var tlsStreamFactory: (any RESPTLSStreamFactory)?
    /// ACL user for `HELLO 3 AUTH` (`default` when only a password is given).
    public var username: String?
    /// Password for `HELLO 3 AUTH`; nil sends no AUTH.
    public var password: String?
    /// Sent with `HELLO 3 SETNAME`.
    public var clientName: String?
    /// Database selected with `SELECT` after connecting (standalone servers only).
    public var database: Int
    /// Time allowed for the TCP or Unix connect (the handshake counts as commands).
    public var connectTimeout: Duration
    /// Time a command may wait for its reply; nil waits forever (blocking commands).
    public var commandTimeout: Duration?
    /// Idle time after which a keep-alive PING is sent; nil disables it. A PING unanswered for the command timeout
    /// (10 s without one), or for the interval if that is longer, closes the connection as dead.
    public var keepAliveInterval: Duration?
    /// Backoff between connection attempts.
    public var reconnect: Reconnect
    /// Parser limits for replies; a reply over a limit closes the connection with `.limitExceeded`.
    public var limits: RESPParser.Limits
    /// Unsent command bytes one connection queues (default 64 MiB). Beyond it, callers suspend until the socket
    /// takes bytes (a server that stopped reading cannot make the client buffer without bound); a single
    /// command larger than this is still sent, alone.
    public var sendBufferLimit: Int
    /// Largest partial reply one connection buffers (default 1 GiB): the read buffer grows with the bytes that
    /// arrive, never to an announced length, and a reply that needs more fails the connection with
    /// `.limitExceeded(what: "receive buffer (one partial reply)", …)`.
    public var receiveBufferLimit: Int
    /// Bytes of pub/sub messages a subscription holds for a subscriber that has not read them (default 32 MiB).
    /// A subscriber that falls further behind gets `RESPError.subscriberTooSlow` and its subscription ends.
    public var subscriptionBufferLimit: Int
    /// Receives out-of-band pushes arriving on the shared connection (client-side caching invalidations,
    /// `DEBUG PROTOCOL push`). Called on the event-loop thread: return quickly.
    public var pushHandler: (@Sendable (RESPValue) -> Void)?

    /// A configuration for `endpoint` with defaults: no auth, database 0, 5 s connect timeout, 30 s command
    /// timeout, 30 s keep-alive, 10 reconnect attempts.
    public init(endpoint: RESPEndpoint) {
        self.endpoint = endpoint
        self.useTLS = false
        self.tlsStreamFactory = nil
        self.username = nil
        self.password = nil
        self.clientName = nil
        self.database = 0
        self.connectTimeout = .seconds(5)
        self.commandTimeout = .seconds(30)
        self.keepAliveInterval = .seconds(30)
        self.reconnect = Reconnect()
        self.limits = RESPParser.Limits()
        self.sendBufferLimit = 64 << 20
        self.receiveBufferLimit = 1 << 30
        self.subscriptionBufferLimit = 32 << 20
        self.pushHandler = nil
    }

    /// Parses `valkey://[user[:password]@]host[:port][/db]` (also `redis://`, TLS `valkeys://`/`rediss://`)
    /// and `unix:///path/to/socket[?db=N]`. Port defaults to 6379. Percent-escapes in user and password are
    /// decoded. IPv6 hosts go in brackets.
    /// - Throws: `RESPError.invalidURL` naming the part that is wrong.
    public init(url: String) throws(RESPError) {
        guard let schemeEnd = url.firstRange(of: "://") else {
            throw .invalidURL(
                url: url, reason: "missing scheme (valkey://, valkeys://, redis://, rediss:// or unix://)")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        var rest = url[schemeEnd.upperBound...]
        if scheme == "unix" {
            var path = rest
            var database = 0
            if let q = rest.firstIndex(of: "?") {
                path = rest[..<q]
                let query = rest[rest.index(after: q)...]
                guard query.hasPrefix("db="), let n = Int(query.dropFirst(3)), n >= 0 else {
                    throw .invalidURL(url: url, reason: "only ?db=<number> is understood after a Unix socket path")
                }
                database = n
            }
            guard path.hasPrefix("/") else { throw .invalidURL(url: url, reason: "Unix socket path must be absolute") }
            self.init(endpoint: .unix(path: String(path)))
            self.database = database
            return
        }
        guard ["valkey", "valkeys", "redis", "rediss"].contains(scheme) else {
            throw .invalidURL(url: url, reason: "unknown scheme '\(scheme)'")
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else {
                    throw .invalidURL(url: url, reason: "database '\(db)' is not a number")
                }
                database = n
            }
            rest = rest[..<slash]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                username = user.isEmpty ? nil : try percentDecode(user, url: url)
                password = try percentDecode(credentials[credentials.index(after: colon)...], url: url)
            } else {
                username = try percentDecode(credentials, url: url)
            }
        }
        var host: Substring
        var port = 6379
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw .invalidURL(url: url, reason: "unclosed '[' in IPv6 host")
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else {
                    throw .invalidURL(url: url, reason: "bad port '\(after.dropFirst())'")
                }
                port = p
            } else if !after.isEmpty {
                throw .invalidURL(url: url, reason: "unexpected '\(after)' after IPv6 host")
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            let p = rest[rest.index(after: colon)...]
            guard let n = Int(p), (1...65535).contains(n) else {
                throw .invalidURL(url: url, reason: "bad port '\(p)'")
            }
            port = n
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw .invalidURL(url: url, reason: "missing host") }
        self.init(endpoint: .tcp(host: String(host), port: port))
        self.useTLS = scheme.hasSuffix("s")
        self.username = username
        self.password = password
        self.database = database
    }
}

private func percentDecode(_ text: Substring, url: String) throws(RESPError) -> String {
    var out: [UInt8] = []
    var bytes = Array(text.utf8)[...]
    while let byte = bytes.popFirst() {
        if byte == UInt8(ascii: "%") {
            guard bytes.count >= 2, let value = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16)
            else {
                throw .invalidURL(url: url, reason: "bad percent-escape in credentials")
            }
            out.append(value)
            bytes = bytes.dropFirst(2)
        } else {
            out.append(byte)
        }
    }
    return String(decoding: out, as: UTF8.self)
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = self.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }
}
