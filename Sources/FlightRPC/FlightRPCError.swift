public import GRPCWire

/// Errors of the Flight RPC library's own configuration parsing (locations, credentials, TLS settings).
/// Call failures are ``GRPCStatus`` values; this type covers what is wrong before any call is made.
public enum FlightRPCError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A location, credential or TLS setting that does not parse or is incomplete.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .invalidArgument(message): return message
        }
    }
}

/// An error that knows the gRPC status it stands for. Services define their own error types and conform them,
/// so ``FlightStatus`` (the one place errors become statuses) needs no knowledge of the services above it.
public protocol GRPCStatusConvertible: Error {
    /// The status sent to the client for this error.
    var grpcStatus: GRPCStatus { get }
}
