internal import Glibc

/// Thin wrappers over the socket system calls GRPCWire uses (IPv4 and IPv6, non-blocking, close-on-exec).
enum SocketCalls {
    /// Resolves `host:port` (numeric addresses and /etc/hosts names) and calls `body` with each address.
    static func withAddresses<T>(
        host: String, port: Int, passive: Bool,
        _ body: (UnsafePointer<sockaddr>, socklen_t, Int32) -> T?
    ) throws(GRPCWireError) -> T {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &result)
        guard rc == 0, let first = result else { throw .invalidAddress("\(host):\(port)") }
        defer { freeaddrinfo(first) }
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let ai = current {
            if let addr = ai.pointee.ai_addr, let value = body(addr, ai.pointee.ai_addrlen, ai.pointee.ai_family) {
                return value
            }
            current = ai.pointee.ai_next
        }
        throw .invalidAddress("\(host):\(port)")
    }

    /// Creates a listening socket; returns the descriptor and the bound port.
    static func listen(host: String, port: Int, backlog: Int32 = 1024) throws(GRPCWireError) -> (Int32, Int) {
        var lastErrno: Int32 = 0
        let fd: Int32
        do {
            fd = try self.withAddresses(host: host, port: port, passive: true) { addr, len, family -> Int32? in
                let s = socket(
                    family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                    0)
                guard s >= 0 else {
                    lastErrno = errno
                    return nil
                }
                var one: Int32 = 1
                _ = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                guard bind(s, addr, len) == 0, Glibc.listen(s, backlog) == 0 else {
                    lastErrno = errno
                    close(s)
                    return nil
                }
                return s
            }
        } catch {
            throw lastErrno != 0 ? .systemCall(name: "bind/listen \(host):\(port)", errno: lastErrno) : error
        }
        return (fd, self.localPort(fd))
    }

    /// The local port of a bound socket.
    static func localPort(_ fd: Int32) -> Int {
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

    /// Starts a non-blocking connect; returns the descriptor (connection completes when writable).
    static func connect(host: String, port: Int) throws(GRPCWireError) -> Int32 {
        var lastErrno: Int32 = 0
        do {
            return try self.withAddresses(host: host, port: port, passive: false) { addr, len, family -> Int32? in
                let s = socket(
                    family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                    0)
                guard s >= 0 else {
                    lastErrno = errno
                    return nil
                }
                if Glibc.connect(s, addr, len) != 0 && errno != EINPROGRESS {
                    lastErrno = errno
                    close(s)
                    return nil
                }
                self.setNoDelay(s)
                return s
            }
        } catch {
            throw lastErrno != 0 ? .systemCall(name: "connect \(host):\(port)", errno: lastErrno) : error
        }
    }

    /// Disables Nagle's algorithm.
    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The pending socket error (`SO_ERROR`), 0 when the connect succeeded.
    static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err
    }

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit (a server needs one descriptor per connection; 1024 is a
    /// common soft default). Failures are ignored: the caps and the accept backoff still apply.
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Descriptors kept free of connections (listener, epoll sets, eventfds, files, the spare accept descriptor).
    static let reservedDescriptors = 64

    /// How many connections fit the soft `RLIMIT_NOFILE` beside ``reservedDescriptors`` (at least 16).
    static func connectionsForOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int.max) else {
            return Int.max
        }
        return max(16, Int(limit.rlim_cur) - self.reservedDescriptors)
    }

    /// Tells an h2c client why it is refused before closing: the server preface (empty SETTINGS) and
    /// GOAWAY(last stream 0, ENHANCE_YOUR_CALM, `reason`), in one non-blocking write (best effort).
    static func refuseHTTP2(_ fd: Int32, reason: String) {
        let debug = Array(reason.utf8.prefix(200))
        var bytes: [UInt8] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0]
        let length = 8 + debug.count
        bytes += [0, UInt8(length >> 8), UInt8(length & 0xFF), 0x7, 0, 0, 0, 0, 0]
        bytes += [0, 0, 0, 0, 0, 0, 0, 0x0B]
        bytes += debug
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }
}

/// A peer's IP address (without the port), the key of the per-peer connection cap.
struct PeerAddress: Hashable, Sendable {
    /// 4 bytes (IPv4), 16 bytes (IPv6; IPv4-mapped addresses are reduced to their 4 bytes), or empty (other).
    let bytes: [UInt8]

    init(_ storage: sockaddr_storage) {
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
