/// One RESP2 or RESP3 value as received from the server.
///
/// Strings are kept as bytes: Valkey values are binary-safe. Maps keep the server's order and allow any
/// value as key. A RESP3 attribute (`|`) is kept with the value it annotates in `.attributed`.
public enum RESPValue: Sendable, Hashable {
    /// `+text` (never contains CR or LF).
    case simpleString([UInt8])
    /// `-CODE message`; inside aggregates (EXEC replies) errors are values, at top level the client throws.
    case simpleError([UInt8])
    /// `:n`, a signed 64-bit integer.
    case integer(Int64)
    /// `$len` binary-safe string (also each chunk sum of a streamed `$?` string).
    case bulkString([UInt8])
    /// `_`, and RESP2's `$-1` / `*-1`.
    case null
    /// `,` double, including infinities and NaN.
    case double(Double)
    /// `#t` / `#f`.
    case boolean(Bool)
    /// `!len` binary-safe error.
    case blobError([UInt8])
    /// `=len` verbatim string: a 3-byte format (`txt`, `mkd`) and the text.
    case verbatimString(format: [UInt8], text: [UInt8])
    /// `(` big number: ASCII digits with an optional leading `-`.
    case bigNumber([UInt8])
    /// `*` array (also streamed `*?`).
    indirect case array([RESPValue])
    /// `%` map (also streamed `%?`), in wire order.
    indirect case map([RESPPair])
    /// `~` set (also streamed `~?`), in wire order.
    indirect case set([RESPValue])
    /// `>` out-of-band push: the first element is the kind (`message`, `subscribe`, `invalidate`, ...).
    indirect case push([RESPValue])
    /// A value preceded by a RESP3 attribute map (`|`).
    indirect case attributed(attributes: [RESPPair], value: RESPValue)
}

/// One key/value entry of a RESP3 map or attribute.
public struct RESPPair: Sendable, Hashable {
    /// The entry's key (any RESP value).
    public var key: RESPValue
    /// The entry's value.
    public var value: RESPValue

    /// An entry of `key` and `value`.
    public init(key: RESPValue, value: RESPValue) {
        self.key = key
        self.value = value
    }
}

extension RESPValue {
    /// The value without any attribute annotation.
    public var unattributed: RESPValue {
        if case .attributed(_, let value) = self { return value.unattributed }
        return self
    }

    /// The bytes of a simple, bulk or verbatim string (or big number); nil for other types.
    public var bytes: [UInt8]? {
        switch self.unattributed {
        case .simpleString(let b), .bulkString(let b), .bigNumber(let b): return b
        case .verbatimString(_, let text): return text
        default: return nil
        }
    }

    /// The UTF-8 decoding of `bytes` (invalid sequences repaired); nil when `bytes` is nil.
    public var string: String? {
        self.bytes.map { String(decoding: $0, as: UTF8.self) }
    }

    /// The integer of an integer reply, or of a string reply holding a decimal integer.
    public var integer: Int64? {
        switch self.unattributed {
        case .integer(let n): return n
        case .simpleString(let b), .bulkString(let b): return Int64(String(decoding: b, as: UTF8.self))
        default: return nil
        }
    }

    /// True for `_` and the RESP2 null forms.
    public var isNull: Bool { self.unattributed == .null }

    /// The elements of an array, set or push; nil for other types.
    public var elements: [RESPValue]? {
        switch self.unattributed {
        case .array(let v), .set(let v), .push(let v): return v
        default: return nil
        }
    }

    /// The entries of a map, or of an array read as alternating keys and values (RESP2 replies).
    public var pairs: [RESPPair]? {
        switch self.unattributed {
        case .map(let p): return p
        case .array(let v) where v.count % 2 == 0:
            return stride(from: 0, to: v.count, by: 2).map { RESPPair(key: v[$0], value: v[$0 + 1]) }
        default: return nil
        }
    }

    /// The value for a string key of a map (or RESP2 flat key/value array); nil if absent.
    public subscript(key: String) -> RESPValue? {
        let wanted = Array(key.utf8)
        return self.pairs?.first(where: { $0.key.bytes == wanted })?.value
    }

    /// A short human-readable rendering for error messages (truncated to 200 characters).
    public var summary: String {
        let text: String
        switch self {
        case .simpleString(let b): text = "+" + String(decoding: b, as: UTF8.self)
        case .simpleError(let b): text = "-" + String(decoding: b, as: UTF8.self)
        case .integer(let n): text = ":\(n)"
        case .bulkString(let b):
            text = "\"" + String(decoding: b.prefix(64), as: UTF8.self) + (b.count > 64 ? "…\"" : "\"")
        case .null: text = "null"
        case .double(let d): text = ",\(d)"
        case .boolean(let b): text = b ? "true" : "false"
        case .blobError(let b): text = "!" + String(decoding: b, as: UTF8.self)
        case .verbatimString(let f, let t):
            text = "=" + String(decoding: f, as: UTF8.self) + ":" + String(decoding: t.prefix(64), as: UTF8.self)
        case .bigNumber(let b): text = "(" + String(decoding: b, as: UTF8.self)
        case .array(let v):
            text = "[" + v.prefix(8).map(\.summary).joined(separator: ", ") + (v.count > 8 ? ", …]" : "]")
        case .set(let v):
            text = "~{" + v.prefix(8).map(\.summary).joined(separator: ", ") + (v.count > 8 ? ", …}" : "}")
        case .push(let v): text = ">[" + v.prefix(8).map(\.summary).joined(separator: ", ") + "]"
        case .map(let p):
            text =
                "{" + p.prefix(8).map { $0.key.summary + ": " + $0.value.summary }.joined(separator: ", ")
                + (p.count > 8 ? ", …}" : "}")
        case .attributed(_, let v): text = "|" + v.summary
        }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    /// True for an out-of-band push (also under an attribute).
    public var isPush: Bool {
        switch self {
        case .push: return true
        case .attributed(_, let value): return value.isPush
        default: return false
        }
    }

    /// True for a simple or blob error (also under an attribute).
    public var isErrorReply: Bool {
        switch self {
        case .simpleError, .blobError: return true
        case .attributed(_, let value): return value.isErrorReply
        default: return false
        }
    }

    /// If this is an error reply (simple or blob), its code (first word) and message.
    public var errorParts: (code: String, message: String)? {
        let raw: [UInt8]
        switch self.unattributed {
        case .simpleError(let b), .blobError(let b): raw = b
        default: return nil
        }
        let text = String(decoding: raw, as: UTF8.self)
        guard let space = text.firstIndex(of: " ") else { return (text, "") }
        return (String(text[..<space]), String(text[text.index(after: space)...]))
    }
}
