/// Something that can be one argument of a command (sent as a RESP bulk string).
public protocol RESPArgument: Sendable {
    /// Appends this argument as `$<len>\r\n<bytes>\r\n`.
    func appendBulk(to buffer: inout [UInt8])
}

extension String: RESPArgument {
    /// Appends the argument as one bulk string.
    public func appendBulk(to buffer: inout [UInt8]) { appendBulkBytes(self.utf8, to: &buffer) }
}

extension Substring: RESPArgument {
    /// Appends the argument as one bulk string.
    public func appendBulk(to buffer: inout [UInt8]) { appendBulkBytes(self.utf8, to: &buffer) }
}

extension Array: RESPArgument where Element == UInt8 {
    /// Appends the argument as one bulk string.
    public func appendBulk(to buffer: inout [UInt8]) { appendBulkBytes(self, to: &buffer) }
}

extension ArraySlice: RESPArgument where Element == UInt8 {
    /// Appends the argument as one bulk string.
    public func appendBulk(to buffer: inout [UInt8]) { appendBulkBytes(self, to: &buffer) }
}

extension Int: RESPArgument {
    /// Appends the argument as one bulk string.
    public func appendBulk(to buffer: inout [UInt8]) { appendBulkBytes(String(self).utf8, to: &buffer) }
}

extension Int64: RESPArgument {
    /// Appends the argument as one bulk string.
    public func appendBulk(to buffer: inout [UInt8]) { appendBulkBytes(String(self).utf8, to: &buffer) }
}

extension Double: RESPArgument {
    /// Infinities are sent as `inf` / `-inf`, the spelling Valkey accepts (e.g. in ZADD and ZRANGEBYSCORE).
    /// Appends the argument as one bulk string.
    public func appendBulk(to buffer: inout [UInt8]) {
        let text = self.isInfinite ? (self < 0 ? "-inf" : "inf") : String(self)
        appendBulkBytes(text.utf8, to: &buffer)
    }
}

@inline(__always)
func appendDecimal(_ value: Int, to buffer: inout [UInt8]) {
    if value >= 0, value < 10 {
        buffer.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
    } else {
        buffer.append(contentsOf: String(value).utf8)
    }
}

@inline(__always)
func appendBulkBytes(_ bytes: some Collection<UInt8>, to buffer: inout [UInt8]) {
    buffer.append(UInt8(ascii: "$"))
    appendDecimal(bytes.count, to: &buffer)
    buffer.append(contentsOf: [13, 10])
    buffer.append(contentsOf: bytes)
    buffer.append(contentsOf: [13, 10])
}

/// One command, encoded once as a RESP array of bulk strings.
///
/// `RESPCommand("SET", key, value)` accepts any `RESPArgument` (String, bytes, integers, doubles).
public struct RESPCommand: Sendable, Hashable {
    /// The encoded command as it goes on the wire.
    public private(set) var encoded: [UInt8]
    /// The command name as given (e.g. "SET"), for error messages.
    public let name: String
    /// Number of arguments including the name.
    public private(set) var count: Int

    /// A command with `name` and `arguments`.
    public init(_ name: String, _ arguments: any RESPArgument...) {
        self.init(name, arguments: arguments)
    }

    /// A command with `name` and an argument list.
    public init(_ name: String, arguments: [any RESPArgument]) {
        self.name = name
        self.count = 1 + arguments.count
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 + name.utf8.count + arguments.count * 16)
        buffer.append(UInt8(ascii: "*"))
        appendDecimal(self.count, to: &buffer)
        buffer.append(contentsOf: [13, 10])
        name.appendBulk(to: &buffer)
        for argument in arguments { argument.appendBulk(to: &buffer) }
        self.encoded = buffer
    }

    /// The name in upper case, as Valkey compares it.
    var upperName: String { self.name.uppercased() }
}

extension RESPValue {
    /// This value encoded in RESP3 (RESP2 forms for nothing: nulls are `_`). Doubles use the shortest
    /// round-tripping decimal, `inf`, `-inf` or `nan`.
    public var encoded: [UInt8] {
        var buffer: [UInt8] = []
        self.encode(into: &buffer)
        return buffer
    }

    /// Appends the RESP3 encoding of this value to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        func line(_ type: Character, _ body: some Collection<UInt8>) {
            buffer.append(contentsOf: String(type).utf8)
            buffer.append(contentsOf: body)
            buffer.append(contentsOf: [13, 10])
        }
        func blob(_ type: Character, _ body: [UInt8]) {
            line(type, String(body.count).utf8)
            buffer.append(contentsOf: body)
            buffer.append(contentsOf: [13, 10])
        }
        switch self {
        case .simpleString(let b): line("+", b)
        case .simpleError(let b): line("-", b)
        case .integer(let n): line(":", String(n).utf8)
        case .bulkString(let b): blob("$", b)
        case .null: line("_", [])
        case .double(let d):
            let text = d.isNaN ? "nan" : d.isInfinite ? (d < 0 ? "-inf" : "inf") : String(d)
            line(",", text.utf8)
        case .boolean(let b): line("#", [b ? UInt8(ascii: "t") : UInt8(ascii: "f")])
        case .blobError(let b): blob("!", b)
        case .verbatimString(let format, let text): blob("=", format + [UInt8(ascii: ":")] + text)
        case .bigNumber(let b): line("(", b)
        case .array(let v), .set(let v), .push(let v):
            let type: Character = if case .array = self { "*" } else if case .set = self { "~" } else { ">" }
            line(type, String(v.count).utf8)
            for e in v { e.encode(into: &buffer) }
        case .map(let p):
            line("%", String(p.count).utf8)
            for e in p {
                e.key.encode(into: &buffer)
                e.value.encode(into: &buffer)
            }
        case .attributed(let attributes, let value):
            line("|", String(attributes.count).utf8)
            for e in attributes {
                e.key.encode(into: &buffer)
                e.value.encode(into: &buffer)
            }
            value.encode(into: &buffer)
        }
    }
}
