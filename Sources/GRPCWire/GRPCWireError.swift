internal import Glibc
internal import IOLoop

/// Transport-level failures of GRPCWire (sockets, TLS, HTTP/2 session setup, malformed framing).
///
/// Outcomes of individual calls are ``GRPCStatus`` values instead.
public enum GRPCWireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed; `errno` is the C error number.
    case systemCall(name: String, errno: Int32)
    /// An address could not be parsed or resolved.
    case invalidAddress(String)
    /// An nghttp2 call failed with the given library error code.
    case nghttp2(call: String, code: Int32)
    /// OpenSSL reported an error (the text of its error queue).
    case tls(call: String, reason: String)
    /// A gRPC length prefix announced a message larger than the receive limit.
    case messageTooLarge(length: Int, limit: Int)
    /// A gRPC message was flagged compressed although no `grpc-encoding` was negotiated.
    case unexpectedCompression(offset: Int)
    /// The server's message admission hook refused an announced message (`code` is the gRPC status code).
    case messageRefused(code: Int, message: String)
    /// A receive buffer step of `requested` bytes did not fit the stream, connection or server budget.
    case receiveBudgetExhausted(requested: Int)
    /// The server is not running or already shut down.
    case notRunning

    /// One line a user can act on.
    public var description: String {
        switch self {
        case .systemCall(let name, let errno):
            return "\(name) failed: errno \(errno) (\(String(cString: strerror(errno))))"
        case .invalidAddress(let text): return "invalid address '\(text)'"
        case .nghttp2(let call, let code):
            return "\(call) failed: nghttp2 error \(code) (\(NGHTTP2Calls.errorText(code)))"
        case .tls(let call, let reason): return "TLS \(call) failed: \(reason)"
        case .messageTooLarge(let length, let limit):
            return "gRPC message of \(length) bytes exceeds the receive limit of \(limit) bytes"
        case .unexpectedCompression(let offset):
            return "gRPC message at byte \(offset) is flagged compressed without grpc-encoding"
        case .messageRefused(_, let message): return message
        case .receiveBudgetExhausted(let requested):
            return "the server's receive budget cannot take \(requested) more bytes now; retry later"
        case .notRunning: return "the gRPC server is not running"
        }
    }
}

extension GRPCWireError {
    /// The I/O layer's failure as GRPCWire reports it (same call names, errno and OpenSSL reasons).
    init(_ error: IOLoopError) {
        switch error {
        case .systemCall(let name, let errno): self = .systemCall(name: name, errno: errno)
        case .invalidAddress(let text, _): self = .invalidAddress(text)
        case .tls(let call, let reason): self = .tls(call: call, reason: reason)
        }
    }
}
