// The node's error enum without its gRPC mapping: Sources/Node/NodeError.swift conforms it to FlightRPC's
// GRPCStatusConvertible, which would pull GRPCWire (nghttp2, OpenSSL) into the harness. The store and BatchIngest
// only create and throw these cases; the harness never maps them to statuses.
public enum NodeError: Error, CustomStringConvertible, Sendable, Equatable {
    case io(operation: String, path: String, errno: Int32)
    case invalidArgument(String)
    case notFound(String)
    case alreadyExists(String)
    case resourceExhausted(String)
    case unavailable(String)
    case failedPrecondition(String)
    case staleToken(String)

    public var description: String {
        switch self {
        case let .io(operation, path, code): return "cannot \(operation) '\(path)': errno \(code)"
        case let .invalidArgument(message), let .notFound(message), let .alreadyExists(message),
            let .resourceExhausted(message), let .unavailable(message), let .failedPrecondition(message),
            let .staleToken(message):
            return message
        }
    }
}
