/// Errors of the node and its commands; `description` is the one line the CLI prints.
public enum NodeError: Error, CustomStringConvertible, Sendable {
    /// A file could not be opened, read or written; `errno` names the reason.
    case io(operation: String, path: String, errno: Int32)
    /// A command-line value that does not parse.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .io(operation, path, code):
            return "cannot \(operation) \(path == "-" ? "standard stream" : "'\(path)'"): \(SystemError.message(code))"
        case let .invalidArgument(message):
            return message
        }
    }
}
