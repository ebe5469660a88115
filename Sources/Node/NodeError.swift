/// Errors of the node and its commands; `description` is the one line the CLI prints. The Flight layer
/// maps each case to one gRPC status (NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, RESOURCE_EXHAUSTED).
public enum NodeError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A file could not be opened, read or written; `errno` names the reason.
    case io(operation: String, path: String, errno: Int32)
    /// A value from the user or the wire that does not parse or is out of range.
    case invalidArgument(String)
    /// The named thing does not exist (or has expired).
    case notFound(String)
    /// The named thing exists already.
    case alreadyExists(String)
    /// A configured limit (memory, size) would be exceeded.
    case resourceExhausted(String)
    /// A service this call needs (Valkey, another node) cannot be reached right now; retrying may help.
    case unavailable(String)
    /// The thing exists but is not in a state that allows the operation (e.g. retrying a completed batch).
    case failedPrecondition(String)
    /// A lease or fencing token is no longer current: a newer attempt owns the batch.
    case staleToken(String)

    public var description: String {
        switch self {
        case let .io(operation, path, code):
            return "cannot \(operation) \(path == "-" ? "standard stream" : "'\(path)'"): \(SystemError.message(code))"
        case let .invalidArgument(message), let .notFound(message), let .alreadyExists(message),
            let .resourceExhausted(message), let .unavailable(message), let .failedPrecondition(message),
            let .staleToken(message):
            return message
        }
    }
}
