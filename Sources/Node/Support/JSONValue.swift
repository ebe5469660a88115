/// A parsed JSON value (no Foundation): enough for the JSON that Flight actions and PutResults carry.
package enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    package static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)): return a.elementsEqual(b) { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member `key` of an object.
    package subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// Strings as themselves, numbers and booleans as their text.
    package var text: String? {
        switch self {
        case let .string(value), let .number(value): return value
        case let .bool(value): return value ? "true" : "false"
        default: return nil
        }
    }

    /// Parses `text`; nil if it is not one JSON value (nesting is limited to 64 levels).
    package static func parse(_ text: String) -> JSONValue? {
        var parser = Parser(bytes: Array(text.utf8))
        guard let value = parser.value(depth: 0) else { return nil }
        parser.skipSpace()
        return parser.index == parser.bytes.count ? value : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func skipSpace() {
            while self.index < self.bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(self.bytes[self.index]) { self.index += 1 }
        }

        mutating func literal(_ word: String) -> Bool {
            let expected = Array(word.utf8)
            guard self.index + expected.count <= self.bytes.count,
                  Array(self.bytes[self.index..<(self.index + expected.count)]) == expected
            else { return false }
            self.index += expected.count
            return true
        }

        mutating func value(depth: Int) -> JSONValue? {
            guard depth < 64 else { return nil }
            self.skipSpace()
            guard self.index < self.bytes.count else { return nil }
            switch self.bytes[self.index] {
            case UInt8(ascii: "{"):
                self.index += 1
                var members: [(String, JSONValue)] = []
                self.skipSpace()
                if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
                    self.index += 1
                    return .object(members)
                }
                while true {
                    self.skipSpace()
                    guard let key = self.string() else { return nil }
                    self.skipSpace()
                    guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else { return nil }
                    self.index += 1
                    guard let member = self.value(depth: depth + 1) else { return nil }
                    members.append((key, member))
                    self.skipSpace()
                    guard self.index < self.bytes.count else { return nil }
                    let separator = self.bytes[self.index]
                    self.index += 1
                    if separator == UInt8(ascii: "}") { return .object(members) }
                    guard separator == UInt8(ascii: ",") else { return nil }
                }
            case UInt8(ascii: "["):
                self.index += 1
                var elements: [JSONValue] = []
                self.skipSpace()
                if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
                    self.index += 1
                    return .array(elements)
                }
                while true {
                    guard let element = self.value(depth: depth + 1) else { return nil }
                    elements.append(element)
                    self.skipSpace()
                    guard self.index < self.bytes.count else { return nil }
                    let separator = self.bytes[self.index]
                    self.index += 1
                    if separator == UInt8(ascii: "]") { return .array(elements) }
                    guard separator == UInt8(ascii: ",") else { return nil }
                }
            case UInt8(ascii: "\""):
                return self.string().map(JSONValue.string)
            case UInt8(ascii: "t"): return self.literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return self.literal("false") ? .bool(false) : nil
            case UInt8(ascii: "n"): return self.literal("null") ? .null : nil
            default:
                let start = self.index
                while self.index < self.bytes.count, "+-0123456789.eE".utf8.contains(self.bytes[self.index]) { self.index += 1 }
                guard self.index > start else { return nil }
                return .number(String(decoding: self.bytes[start..<self.index], as: UTF8.self))
            }
        }

        mutating func string() -> String? {
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\"") else { return nil }
            self.index += 1
            var scalars = String.UnicodeScalarView()
            var run = self.index
            var pendingHigh: UInt32?
            // A high surrogate not followed by a low one becomes U+FFFD, like any other broken sequence.
            func settle(_ pending: inout UInt32?, into scalars: inout String.UnicodeScalarView) {
                if pending != nil { scalars.append("\u{FFFD}") }
                pending = nil
            }
            func flush(_ end: Int, into scalars: inout String.UnicodeScalarView) {
                if end > run { settle(&pendingHigh, into: &scalars) }
                scalars.append(contentsOf: String(decoding: self.bytes[run..<end], as: UTF8.self).unicodeScalars)
            }
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                if byte == UInt8(ascii: "\"") {
                    flush(self.index, into: &scalars)
                    settle(&pendingHigh, into: &scalars)
                    self.index += 1
                    return String(scalars)
                }
                guard byte == UInt8(ascii: "\\") else {
                    self.index += 1
                    continue
                }
                flush(self.index, into: &scalars)
                guard self.index + 1 < self.bytes.count else { return nil }
                let escape = self.bytes[self.index + 1]
                self.index += 2
                if escape != UInt8(ascii: "u") { settle(&pendingHigh, into: &scalars) }
                switch escape {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "u"):
                    guard self.index + 4 <= self.bytes.count,
                          let code = UInt32(String(decoding: self.bytes[self.index..<(self.index + 4)], as: UTF8.self), radix: 16)
                    else { return nil }
                    self.index += 4
                    if (0xD800..<0xDC00).contains(code) {
                        settle(&pendingHigh, into: &scalars)
                        pendingHigh = code
                    } else if (0xDC00..<0xE000).contains(code), let high = pendingHigh {
                        pendingHigh = nil
                        scalars.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)) ?? "\u{FFFD}")
                    } else {
                        settle(&pendingHigh, into: &scalars)
                        scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                    }
                default: scalars.append(Unicode.Scalar(escape))
                }
                run = self.index
            }
            return nil
        }
    }
}
