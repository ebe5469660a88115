import Glibc

/// Where a server listens.
public enum RESPEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// A TCP host (name, IPv4 or IPv6 literal) and port.
    case tcp(host: String, port: Int)
    /// A Unix domain socket path.
    case unix(path: String)

    /// `host:port`, `[v6]:port` or `unix:path`.
    public var description: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}

/// A resolved socket address.
struct SocketAddress: Sendable {
    var storage: [UInt8]
    var family: Int32
}

/// Resolves `endpoint`: literals directly, names with getaddrinfo on a separate thread (it blocks).
func resolve(_ endpoint: RESPEndpoint) async throws(RESPError) -> SocketAddress {
    switch endpoint {
    case .unix(let path):
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            throw .invalidURL(url: path, reason: "Unix socket path longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in pathBytes.enumerated() { raw[i] = byte }
        }
        return SocketAddress(storage: withUnsafeBytes(of: &address) { Array($0) }, family: AF_UNIX)
    case .tcp(let host, let port):
        let name = host == "localhost" ? "127.0.0.1" : host
        if let literal = numericAddress(name, port: port) { return literal }
        let result = await runOnNewThread { () -> Result<SocketAddress, RESPError> in
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>? = nil
            let code = getaddrinfo(name, String(port), &hints, &list)
            defer { if let list { freeaddrinfo(list) } }
            guard code == 0, let first = list, let address = first.pointee.ai_addr else {
                return .failure(.resolveFailed(host: host, reason: String(cString: gai_strerror(code))))
            }
            let bytes = Array(UnsafeRawBufferPointer(start: address, count: Int(first.pointee.ai_addrlen)))
            return .success(SocketAddress(storage: bytes, family: first.pointee.ai_family))
        }
        return try result.get()
    }
}

private func numericAddress(_ host: String, port: Int) -> SocketAddress? {
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

/// Creates a non-blocking socket and starts connecting it. Returns the descriptor (connection possibly
/// still in progress).
func startConnect(_ address: SocketAddress, endpoint: String) throws(RESPError) -> Int32 {
    let fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw .io(operation: "socket", endpoint: endpoint, errno: errno) }
    if address.family != AF_UNIX {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    let result = address.storage.withUnsafeBytes { raw in
        connect(fd, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
    }
    if result != 0, errno != EINPROGRESS, errno != EAGAIN {
        let code = errno
        _ = Glibc.close(fd)
        throw .io(operation: "connect", endpoint: endpoint, errno: code)
    }
    return fd
}

/// The pending error of a connecting socket (0 when connected).
func socketError(_ fd: Int32) -> Int32 {
    var code: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) != 0 { return errno }
    return code
}
