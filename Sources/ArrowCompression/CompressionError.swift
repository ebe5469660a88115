/// Every error ArrowCompression throws. Each case says what was wrong and where (a byte offset into the
/// compressed input), so a caller can name the buffer and the user can act on `description` alone.
public enum CompressionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The compressed input ended before `what` was complete.
    case truncated(what: String, offset: Int, needed: Int, available: Int)
    /// The compressed input breaks the format at `offset`.
    case corrupt(what: String, offset: Int, reason: String)
    /// A checksum stored in the input differs from the one computed over the data.
    case checksumMismatch(what: String, stored: UInt32, computed: UInt32)
    /// The data decoded to a different size than the caller declared.
    case sizeMismatch(declared: Int, decoded: Int)
    /// A configured limit (decompressed size, window size) was exceeded.
    case limitExceeded(what: String, limit: Int, found: Int)
    /// A feature of the format this implementation rejects on purpose (dictionaries).
    case unsupported(what: String)

    public var description: String {
        switch self {
        case let .truncated(what, offset, needed, available):
            return "truncated \(what) at byte \(offset): needed \(needed) bytes, \(available) available"
        case let .corrupt(what, offset, reason):
            return "corrupt \(what) at byte \(offset): \(reason)"
        case let .checksumMismatch(what, stored, computed):
            return "\(what) mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))"
        case let .sizeMismatch(declared, decoded):
            return "decompressed size \(decoded) differs from the declared \(declared) bytes"
        case let .limitExceeded(what, limit, found):
            return "\(what) exceeds the limit of \(limit) (found \(found))"
        case let .unsupported(what):
            return "unsupported: \(what)"
        }
    }
}
