package import Glibc

/// A resolved socket address (IPv4, IPv6 or Unix), as the bytes of its `sockaddr`.
package struct SocketAddress: Sendable, Hashable {
    /// The `sockaddr_in`, `sockaddr_in6` or `sockaddr_un` bytes.
    package var storage: [UInt8]
    /// `AF_INET`, `AF_INET6` or `AF_UNIX`.
    package var family: Int32

    /// A numeric IPv4 or IPv6 literal with `port`; nil for anything else (a name to resolve).
    package static func numeric(_ host: String, port: Int) -> SocketAddress? {
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
            return SocketAddress(storage: withUnsafeBytes(of: &v4) { Array($0) }, family: AF_INET)
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
            return SocketAddress(storage: withUnsafeBytes(of: &v6) { Array($0) }, family: AF_INET6)
        }
        return nil
    }

    /// A Unix domain socket path.
    /// - Throws: `IOLoopError.invalidAddress` when the path does not fit `sun_path`.
    package static func unix(path: String) throws(IOLoopError) -> SocketAddress {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            throw .invalidAddress(path, reason: "Unix socket path longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in pathBytes.enumerated() { raw[i] = byte }
        }
        return SocketAddress(storage: withUnsafeBytes(of: &address) { Array($0) }, family: AF_UNIX)
    }

    /// Every address of `host:port` from getaddrinfo (blocking: call it off the loop threads, see
    /// ``resolve(host:port:passive:)``). An empty host with `passive` is the wildcard address.
    /// - Throws: `IOLoopError.invalidAddress` with getaddrinfo's reason.
    package static func resolveBlocking(host: String, port: Int, passive: Bool = false) throws(IOLoopError)
        -> [SocketAddress]
    {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &list)
        defer { if let list { freeaddrinfo(list) } }
        guard rc == 0 else { throw .invalidAddress("\(host):\(port)", reason: String(cString: gai_strerror(rc))) }
        var found: [SocketAddress] = []
        var current = list
        while let ai = current {
            if let addr = ai.pointee.ai_addr {
                let bytes = Array(UnsafeRawBufferPointer(start: addr, count: Int(ai.pointee.ai_addrlen)))
                found.append(SocketAddress(storage: bytes, family: ai.pointee.ai_family))
            }
            current = ai.pointee.ai_next
        }
        guard !found.isEmpty else { throw .invalidAddress("\(host):\(port)", reason: "no address") }
        return found
    }

    /// Resolves `host:port`: literals at once, names with getaddrinfo on a short-lived thread of its own (it
    /// blocks), never on a loop thread or the cooperative pool.
    /// - Throws: `IOLoopError.invalidAddress` with getaddrinfo's reason.
    package static func resolve(host: String, port: Int, passive: Bool = false) async throws(IOLoopError)
        -> [SocketAddress]
    {
        if let literal = SocketAddress.numeric(host, port: port) { return [literal] }
        let result = await runOnNewThread { () -> Result<[SocketAddress], IOLoopError> in
            Result { () throws(IOLoopError) in try SocketAddress.resolveBlocking(host: host, port: port, passive: passive) }
        }
        return try result.get()
    }

    /// Calls `completion` with the addresses of `host:port`, resolved on a short-lived thread (never the
    /// caller's): for loop threads, which must not block.
    package static func resolve(
        host: String, port: Int, completion: @escaping @Sendable (Result<[SocketAddress], IOLoopError>) -> Void
    ) {
        startThread {
            completion(Result { () throws(IOLoopError) in try SocketAddress.resolveBlocking(host: host, port: port) })
        }
    }
}

/// Thin wrappers over the socket system calls (IPv4, IPv6 and Unix, non-blocking, close-on-exec).
package enum SocketCalls {
    /// Creates a listening socket on the first address of `host:port` that binds; returns the descriptor and
    /// the bound port. Resolves names with getaddrinfo on the calling thread (servers bind before serving).
    /// - Throws: `IOLoopError.systemCall` (bind/listen) or `.invalidAddress`.
    package static func listen(host: String, port: Int, backlog: Int32 = 1024) throws(IOLoopError) -> (Int32, Int) {
        let addresses: [SocketAddress]
        if let literal = SocketAddress.numeric(host, port: port) {
            addresses = [literal]
        } else {
            addresses = try SocketAddress.resolveBlocking(host: host, port: port, passive: true)
        }
        var lastErrno: Int32 = 0
        for address in addresses {
            let s = socket(
                address.family,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard s >= 0 else {
                lastErrno = errno
                continue
            }
            var one: Int32 = 1
            _ = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            let bound = address.storage.withUnsafeBytes { raw in
                bind(s, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count)) == 0
            }
            guard bound, Glibc.listen(s, backlog) == 0 else {
                lastErrno = errno
                _ = Glibc.close(s)
                continue
            }
            return (s, self.localPort(s))
        }
        throw .systemCall(name: "bind/listen \(host):\(port)", errno: lastErrno)
    }

    /// The local port of a bound socket.
    package static func localPort(_ fd: Int32) -> Int {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { return 0 }
        if Int32(storage.ss_family) == AF_INET6 {
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        }
        return withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    /// Creates a non-blocking socket and starts connecting it to `address` (TCP sockets get TCP_NODELAY, and
    /// SO_KEEPALIVE with `keepAlive`). Returns the descriptor; the connection completes when it is writable
    /// (``pendingError(_:)`` then tells whether it succeeded).
    /// - Throws: `IOLoopError.systemCall` naming `socket` or `connect` (e.g. ECONNREFUSED on a Unix socket).
    package static func connect(_ address: SocketAddress, keepAlive: Bool = false) throws(IOLoopError) -> Int32 {
        let fd = socket(
            address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemCall(name: "socket", errno: errno) }
        if address.family != AF_UNIX {
            self.setNoDelay(fd)
            if keepAlive {
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
            }
        }
        let result = address.storage.withUnsafeBytes { raw in
            Glibc.connect(fd, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        if result != 0, errno != EINPROGRESS, errno != EAGAIN {
            let code = errno
            _ = Glibc.close(fd)
            throw .systemCall(name: "connect", errno: code)
        }
        return fd
    }

    /// Disables Nagle's algorithm.
    package static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The pending socket error (`SO_ERROR`), 0 when the connect succeeded.
    package static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return errno }
        return err
    }

    /// Closes a descriptor.
    @discardableResult
    package static func close(_ fd: Int32) -> Int32 { Glibc.close(fd) }

    /// One best-effort, non-blocking send (a refusal notice before closing).
    package static func sendBestEffort(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit (a server needs one descriptor per connection; 1024 is a
    /// common soft default). Failures are ignored: the caps and the accept backoff still apply.
    package static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Descriptors kept free of connections (listener, epoll sets, eventfds, files, the spare accept descriptor).
    package static let reservedDescriptors = 64

    /// How many connections fit the soft `RLIMIT_NOFILE` beside ``reservedDescriptors`` (at least 16).
    package static func connectionsForOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int.max) else {
            return Int.max
        }
        return max(16, Int(limit.rlim_cur) - self.reservedDescriptors)
    }
}

/// The outcome of one non-blocking read or write on a ``ByteStream``.
package enum IOResult: Sendable, Equatable {
    /// This many bytes moved (more than zero).
    case transferred(Int)
    /// Retry when the socket is readable (no data yet, or a TLS write that must first read).
    case wantRead
    /// Retry when the socket is writable (a full send buffer, or a TLS read that must first write).
    case wantWrite
    /// The peer closed the stream (reads only).
    case closed
}

/// A connected, non-blocking byte stream over one socket: plain (``SocketStream``) or TLS
/// (``TLSClientStream``). Used from one thread at a time (its loop thread).
package protocol ByteStream: AnyObject {
    /// The socket whose readiness drives this stream.
    var fileDescriptor: Int32 { get }
    /// Reads up to `buffer.count` bytes.
    /// - Throws: `IOLoopError` when the stream failed.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(IOLoopError) -> IOResult
    /// Writes a prefix of `bytes`. After `.wantRead`/`.wantWrite` the retry passes at least the same bytes.
    /// - Throws: `IOLoopError` when the stream failed.
    func write(_ bytes: UnsafeRawBufferPointer) throws(IOLoopError) -> IOResult
    /// Closes the stream and its socket. Idempotent.
    func close()
}

/// A plain socket (TCP or Unix) as a ``ByteStream``.
package final class SocketStream: ByteStream {
    package let fileDescriptor: Int32
    private var open = true

    /// Takes ownership of the connected, non-blocking socket `fileDescriptor`.
    package init(fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(IOLoopError) -> IOResult {
        while true {
            let n = Glibc.read(self.fileDescriptor, buffer.baseAddress, buffer.count)
            if n > 0 { return .transferred(n) }
            if n == 0 { return .closed }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wantRead }
            throw .systemCall(name: "read", errno: code)
        }
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws(IOLoopError) -> IOResult {
        while true {
            let n = send(self.fileDescriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n == 0 ? .wantWrite : .transferred(n) }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wantWrite }
            throw .systemCall(name: "write", errno: code)
        }
    }

    package func close() {
        guard self.open else { return }
        self.open = false
        _ = Glibc.close(self.fileDescriptor)
    }
}

/// A peer's IP address (without the port), the key of the per-peer connection cap.
package struct PeerAddress: Hashable, Sendable {
    /// 4 bytes (IPv4), 16 bytes (IPv6; IPv4-mapped addresses are reduced to their 4 bytes), or empty (other).
    package let bytes: [UInt8]

    /// The address part of an accepted peer's `sockaddr_storage`.
    package init(_ storage: sockaddr_storage) {
        var s = storage
        switch Int32(s.ss_family) {
        case AF_INET:
            self.bytes = withUnsafeBytes(of: &s) { raw in
                raw.baseAddress.map { base in
                    let sin = base.assumingMemoryBound(to: sockaddr_in.self).pointee
                    return withUnsafeBytes(of: sin.sin_addr) { Array($0) }
                } ?? []
            }
        case AF_INET6:
            let all: [UInt8] = withUnsafeBytes(of: &s) { raw in
                raw.baseAddress.map { base in
                    let sin6 = base.assumingMemoryBound(to: sockaddr_in6.self).pointee
                    return withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
                } ?? []
            }
            let mapped = all.count == 16 && all[0..<10].allSatisfy { $0 == 0 } && all[10] == 0xFF && all[11] == 0xFF
            self.bytes = mapped ? Array(all[12..<16]) : all
        default:
            self.bytes = []
        }
    }
}

/// Runs a blocking call (name resolution) on a new short-lived thread and returns its result.
package func runOnNewThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        startThread { continuation.resume(returning: body()) }
    }
}

/// Runs `body` on a new detached thread (on the caller's thread if none can be started).
private func startThread(_ body: @escaping @Sendable () -> Void) {
    let job = ThreadJob(body)
    var thread = pthread_t()
    let context = Unmanaged.passRetained(job).toOpaque()
    let result = pthread_create(
        &thread, nil,
        { context in
            guard let context else { return nil }
            Unmanaged<ThreadJob>.fromOpaque(context).takeRetainedValue().body()
            return nil
        }, context)
    if result == 0 {
        pthread_detach(thread)
    } else {
        Unmanaged<ThreadJob>.fromOpaque(context).takeRetainedValue().body()
    }
}

private final class ThreadJob: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
