/// Every error ArrowIPC throws. Each case names what was wrong and where, so a user can act on
/// `description` alone.
public enum ArrowIPCError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes were available than a read needed.
    case truncated(what: String, offset: Int, needed: Int, available: Int)
    /// A flatbuffer offset, vtable or vector pointed outside its buffer or was otherwise malformed.
    case invalidFlatbuffer(what: String, offset: Int, reason: String)
    /// A structurally valid message that breaks an IPC rule (wrong message type, bad buffer layout, ...).
    case invalidMessage(what: String, reason: String)
    /// Column data that contradicts its metadata (found by structural or full validation).
    case invalidData(field: String, reason: String)
    /// A metadata or type feature this implementation rejects on purpose.
    case unsupported(what: String)
    /// A configured limit (message size, nesting depth, count) was exceeded.
    case limitExceeded(what: String, limit: Int, found: Int)
    /// A typed accessor was asked for a type the column does not have.
    case typeMismatch(expected: String, found: String)
    /// Bytes that are neither an Arrow IPC stream nor an Arrow IPC file.
    case notArrowIPC(reason: String)
    /// A compressed body buffer that does not decompress to its declared length (`buffer` names it).
    case decompressionFailed(buffer: String, codec: String, reason: String)

    public var description: String {
        switch self {
        case let .truncated(what, offset, needed, available):
            return "truncated \(what) at byte \(offset): needed \(needed) bytes, \(available) available"
        case let .invalidFlatbuffer(what, offset, reason):
            return "invalid flatbuffer \(what) at byte \(offset): \(reason)"
        case let .invalidMessage(what, reason):
            return "invalid IPC \(what): \(reason)"
        case let .invalidData(field, reason):
            return "invalid data in field '\(field)': \(reason)"
        case let .unsupported(what):
            return "unsupported: \(what)"
        case let .limitExceeded(what, limit, found):
            return "\(what) exceeds the limit of \(limit) (found \(found))"
        case let .typeMismatch(expected, found):
            return "type mismatch: expected \(expected), found \(found)"
        case let .notArrowIPC(reason):
            return "not an Arrow IPC stream or file: \(reason)"
        case let .decompressionFailed(buffer, codec, reason):
            return "cannot decompress \(buffer) (\(codec)): \(reason)"
        }
    }
}
