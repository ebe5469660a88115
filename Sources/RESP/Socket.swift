internal import IOLoop

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

/// Resolves `endpoint`: Unix paths and literals directly, names with getaddrinfo on a thread of its own (it
/// blocks; never the loop thread or the cooperative pool). `localhost` is 127.0.0.1.
func resolve(_ endpoint: RESPEndpoint) async throws(RESPError) -> SocketAddress {
    switch endpoint {
    case .unix(let path):
        do {
            return try SocketAddress.unix(path: path)
        } catch {
            if case .invalidAddress(_, let reason) = error { throw .invalidURL(url: path, reason: reason) }
            throw .invalidURL(url: path, reason: error.description)
        }
    case .tcp(let host, let port):
        let name = host == "localhost" ? "127.0.0.1" : host
        do throws(IOLoopError) {
            let addresses = try await SocketAddress.resolve(host: name, port: port)
            guard let first = addresses.first else { throw IOLoopError.invalidAddress(host, reason: "no address") }
            return first
        } catch {
            if case .invalidAddress(_, let reason) = error { throw .resolveFailed(host: host, reason: reason) }
            throw .resolveFailed(host: host, reason: error.description)
        }
    }
}

/// Creates a non-blocking socket and starts connecting it (TCP: TCP_NODELAY and SO_KEEPALIVE). Returns the
/// descriptor (connection possibly still in progress).
/// - Throws: `RESPError.io` naming `socket` or `connect`.
func startConnect(_ address: SocketAddress, endpoint: String) throws(RESPError) -> Int32 {
    do {
        return try SocketCalls.connect(address, keepAlive: true)
    } catch {
        throw RESPError(error, endpoint: endpoint)
    }
}

extension RESPError {
    /// The I/O layer's failure on `endpoint`: a system call as `.io`, anything else (TLS) as a closed connection.
    init(_ error: IOLoopError, endpoint: String) {
        switch error {
        case .systemCall(let name, let errno): self = .io(operation: name, endpoint: endpoint, errno: errno)
        case .invalidAddress(let host, let reason): self = .resolveFailed(host: host, reason: reason)
        case .tls: self = .connectionClosed(endpoint: endpoint, reason: error.description, commandsInFlight: 0)
        }
    }
}
