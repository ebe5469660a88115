/// The key of a stored batch, `QUEUE/ID`, or `QUEUE/ID/result` for the result of processing it
/// (the ValkeyFlight contract (CONTRACT.md) §2). QUEUE and ID are 1–128 characters of `[A-Za-z0-9._-]`.
public struct BatchKey: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let queue: String
    public let id: String
    public let isResult: Bool

    /// Checks both parts; throws ``NodeError/invalidArgument(_:)`` naming the bad part.
    public init(queue: String, id: String, isResult: Bool = false) throws(NodeError) {
        try Self.check(queue, "queue")
        try Self.check(id, "id")
        self.queue = queue
        self.id = id
        self.isResult = isResult
    }

    /// Parses `QUEUE/ID` or `QUEUE/ID/result`.
    public init(parsing text: String) throws(NodeError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        try self.init(path: parts)
    }

    /// Parses a Flight descriptor path `[QUEUE, ID]` or `[QUEUE, ID, "result"]`.
    public init(path: [String]) throws(NodeError) {
        switch path.count {
        case 2:
            try self.init(queue: path[0], id: path[1])
        case 3 where path[2] == "result":
            try self.init(queue: path[0], id: path[1], isResult: true)
        default:
            throw .invalidArgument("a batch key is QUEUE/ID or QUEUE/ID/result, got '\(path.joined(separator: "/"))'")
        }
    }

    /// The key of this batch's processing result.
    public var resultKey: BatchKey {
        // Both parts were checked when self was made.
        (try? BatchKey(queue: self.queue, id: self.id, isResult: true)) ?? self
    }

    public var description: String { "\(self.queue)/\(self.id)\(self.isResult ? "/result" : "")" }

    public static func < (lhs: BatchKey, rhs: BatchKey) -> Bool { lhs.description < rhs.description }

    package static func check(_ part: String, _ what: String) throws(NodeError) {
        let bytes = Array(part.utf8)
        guard (1...128).contains(bytes.count) else {
            throw .invalidArgument("\(what) must be 1 to 128 characters, got \(bytes.count)")
        }
        for byte in bytes where !Self.isAllowed(byte) {
            throw .invalidArgument("\(what) '\(part)' may only contain A-Z, a-z, 0-9, '.', '_' and '-'")
        }
    }

    static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}

extension BatchKey {
    /// Client text shown in an error message: at most 128 characters, control characters replaced, so a status
    /// never echoes unbounded or unprintable input.
    package static func printable(_ text: String) -> String {
        let cleaned = text.unicodeScalars.prefix(128).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }
        return String(cleaned) + (text.unicodeScalars.count > 128 ? "…" : "")
    }
}
