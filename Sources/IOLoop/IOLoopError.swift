internal import Glibc

/// Failures of the I/O layer: system calls, name resolution and TLS. Protocol layers (GRPCWire, RESP) map these
/// into their own error enums.
public enum IOLoopError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed; `errno` is the C error number.
    case systemCall(name: String, errno: Int32)
    /// An address could not be parsed or resolved (`reason` from getaddrinfo, or why it is invalid).
    case invalidAddress(String, reason: String)
    /// OpenSSL reported an error (the text of its error queue, or what failed).
    case tls(call: String, reason: String)

    /// One line a user can act on.
    public var description: String {
        switch self {
        case .systemCall(let name, let errno):
            return "\(name) failed: errno \(errno) (\(String(cString: strerror(errno))))"
        case .invalidAddress(let text, let reason): return "invalid address '\(text)': \(reason)"
        case .tls(let call, let reason): return "TLS \(call) failed: \(reason)"
        }
    }
}
