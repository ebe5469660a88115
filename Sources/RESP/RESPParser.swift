/// An incremental RESP3/RESP2 reply parser.
///
/// `parse` reads one complete value from the front of a byte buffer, returns nil when more bytes are
/// needed, and throws `RESPError.malformed` or `.limitExceeded` for bytes that can never become valid.
/// It never traps on wire data. Streamed strings (`$?`) and streamed aggregates (`*?`, `~?`, `%?`) are
/// supported; a streamed push or attribute (`>?`, `|?`) is rejected, as are pushes inside aggregates.
public struct RESPParser: Sendable {
    /// Limits applied while parsing. Each one raises `RESPError.limitExceeded` when exceeded.
    public struct Limits: Sendable, Hashable {
        /// Largest bulk/blob/verbatim string, and largest total of a streamed string (default 512 MiB).
        public var maxBulkLength: Int
        /// Largest element count of one aggregate; maps count keys and values (default 16 Mi).
        public var maxElements: Int
        /// Deepest nesting of aggregates and attributes (default 64).
        public var maxDepth: Int
        /// Longest line of a simple string, error, number or header (default 1 MiB).
        public var maxLineLength: Int

        /// Limits with the documented defaults.
        public init(
            maxBulkLength: Int = 512 << 20, maxElements: Int = 16 << 20, maxDepth: Int = 64,
            maxLineLength: Int = 1 << 20
        ) {
            self.maxBulkLength = maxBulkLength
            self.maxElements = maxElements
            self.maxDepth = maxDepth
            self.maxLineLength = maxLineLength
        }
    }

    /// The limits this parser enforces.
    public var limits: Limits

    /// A parser enforcing `limits`.
    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Parses one value from the start of `bytes`.
    /// - Returns: the value and the number of bytes it used, or nil if `bytes` ends before the value does.
    /// - Throws: `RESPError.malformed` for invalid bytes, `RESPError.limitExceeded` when a limit is hit.
    public func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(RESPError) -> (value: RESPValue, length: Int)? {
        var needed = 0
        return try self.parse(bytes, minimumLength: &needed)
    }

    /// Parses one value from the start of `bytes`, as `parse(_:)`; when it returns nil, `minimumLength` is a
    /// lower bound on the bytes the value takes (more than `bytes.count`): parsing again before that many
    /// arrived cannot succeed, so a caller that waits for them parses a long partial reply a few times, not on
    /// every read. The bound is exact for strings (the announced length plus CRLF) and counts at least 3 bytes
    /// for each element of an aggregate still to come.
    /// - Throws: as `parse(_:)`.
    public func parse(_ bytes: UnsafeBufferPointer<UInt8>, minimumLength: inout Int) throws(RESPError)
        -> (value: RESPValue, length: Int)?
    {
        var cursor = Cursor(bytes: bytes, limits: self.limits)
        guard let value = try cursor.value(depth: 0) else {
            minimumLength = max(cursor.needed, bytes.count + 1)
            return nil
        }
        return (value, cursor.index)
    }

    /// Parses one value from the start of `bytes`; see `parse(_:)` for results and errors.
    public func parse(_ bytes: some Collection<UInt8>) throws(RESPError) -> (value: RESPValue, length: Int)? {
        let array = Array(bytes)
        let result = array.withUnsafeBufferPointer { buffer in
            Result { () throws(RESPError) in try self.parse(buffer) }
        }
        return try result.get()
    }
}

/// A bounds-checked read position over the bytes of one reply. Every read either succeeds, returns nil for
/// "need more bytes" (leaving `index` unspecified: the caller restarts the whole reply), or throws.
private struct Cursor {
    let bytes: UnsafeBufferPointer<UInt8>
    let limits: RESPParser.Limits
    var index = 0
    /// After a nil ("need more bytes"): a lower bound on the end offset of the value being parsed.
    var needed = 0

    init(bytes: UnsafeBufferPointer<UInt8>, limits: RESPParser.Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    var available: Int { self.bytes.count - self.index }

    /// Records that the value ends at `end` or later; returns nil (for `return self.short(…)`).
    mutating func short<T>(_ end: Int) -> T? {
        self.needed = max(self.needed, end)
        return nil
    }

    /// Records that `count` more elements (at least 3 bytes each) follow the one that is incomplete.
    mutating func siblings(_ count: Int) {
        let (bytes, o1) = max(count, 0).multipliedReportingOverflow(by: 3)
        let (end, o2) = self.needed.addingReportingOverflow(bytes)
        self.needed = o1 || o2 ? Int.max : end
    }

    /// Reads a line up to CRLF; returns its bounds and moves past the CRLF.
    mutating func line(_ what: String) throws(RESPError) -> Range<Int>? {
        let start = self.index
        var i = start
        let end = self.bytes.count
        while i < end {
            let byte = self.bytes[i]
            if byte == UInt8(ascii: "\r") {
                guard i + 1 < end else { return self.short(end + 1) }
                guard self.bytes[i + 1] == UInt8(ascii: "\n") else {
                    throw .malformed(
                        what: what, offset: i + 1, expected: "LF after CR", found: describe(self.bytes[i + 1]))
                }
                self.index = i + 2
                return start..<i
            }
            if byte == UInt8(ascii: "\n") {
                throw .malformed(what: what, offset: i, expected: "CRLF line end", found: "bare LF")
            }
            i += 1
            if i - start > self.limits.maxLineLength {
                throw .limitExceeded(
                    what: "\(what) line length", limit: self.limits.maxLineLength, found: i - start, offset: start)
            }
        }
        return self.short(end + 1)
    }

    func copy(_ range: Range<Int>) -> [UInt8] {
        Array(UnsafeBufferPointer(rebasing: self.bytes[range]))
    }

    /// A signed decimal 64-bit integer occupying the whole range.
    func integer(_ range: Range<Int>, _ what: String) throws(RESPError) -> Int64 {
        var i = range.lowerBound
        var negative = false
        if i < range.upperBound, self.bytes[i] == UInt8(ascii: "-") || self.bytes[i] == UInt8(ascii: "+") {
            negative = self.bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < range.upperBound else {
            throw .malformed(what: what, offset: i, expected: "decimal digits", found: "end of line")
        }
        var value: Int64 = 0
        while i < range.upperBound {
            let byte = self.bytes[i]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                throw .malformed(what: what, offset: i, expected: "decimal digit", found: describe(byte))
            }
            let digit = Int64(byte - UInt8(ascii: "0"))
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) =
                negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
            guard !o1, !o2 else {
                throw .malformed(
                    what: what, offset: range.lowerBound, expected: "a signed 64-bit integer", found: "overflow")
            }
            value = next
            i += 1
        }
        return value
    }

    /// A length header: -1 (null) or 0...limit, or "?" (streamed, returned as nil).
    func length(_ range: Range<Int>, _ what: String, limit: Int, allowNull: Bool, allowStreamed: Bool) throws(RESPError)
        -> Int??
    {
        if range.count == 1, self.bytes[range.lowerBound] == UInt8(ascii: "?") {
            guard allowStreamed else {
                throw .malformed(
                    what: what, offset: range.lowerBound, expected: "a length",
                    found: "'?' (streamed form not allowed here)")
            }
            return .some(nil)
        }
        let n = try self.integer(range, what + " length")
        if n == -1, allowNull { return nil }
        guard n >= 0 else {
            throw .malformed(what: what, offset: range.lowerBound, expected: "a non-negative length", found: "\(n)")
        }
        guard n <= Int64(limit) else {
            throw .limitExceeded(what: what, limit: limit, found: Int(clamping: n), offset: range.lowerBound)
        }
        return .some(Int(n))
    }

    /// `length` bytes followed by CRLF.
    mutating func payload(_ length: Int, _ what: String) throws(RESPError) -> Range<Int>? {
        let (needed, overflow) = length.addingReportingOverflow(2)
        guard !overflow else {
            throw .limitExceeded(what: what, limit: self.limits.maxBulkLength, found: length, offset: self.index)
        }
        guard self.available >= needed else { return self.short(self.index + needed) }
        let start = self.index
        let end = start + length
        guard self.bytes[end] == UInt8(ascii: "\r"), self.bytes[end + 1] == UInt8(ascii: "\n") else {
            throw .malformed(
                what: what, offset: end, expected: "CRLF after \(length) bytes", found: describe(self.bytes[end]))
        }
        self.index = end + 2
        return start..<end
    }

    mutating func value(depth: Int) throws(RESPError) -> RESPValue? {
        guard self.index < self.bytes.count else { return self.short(self.bytes.count + 1) }
        let typeOffset = self.index
        let type = self.bytes[typeOffset]
        self.index += 1
        switch type {
        case UInt8(ascii: "+"):
            guard let r = try self.line("simple string") else { return nil }
            // The most frequent replies share one allocation instead of one per reply.
            if r.count == 2, self.bytes[r.lowerBound] == UInt8(ascii: "O"),
                self.bytes[r.lowerBound + 1] == UInt8(ascii: "K")
            {
                return .simpleString(internedOK)
            }
            if r.count == 6, self.bytes[r.lowerBound] == UInt8(ascii: "Q"), self.copy(r) == internedQUEUED {
                return .simpleString(internedQUEUED)
            }
            return .simpleString(self.copy(r))
        case UInt8(ascii: "-"):
            guard let r = try self.line("simple error") else { return nil }
            return .simpleError(self.copy(r))
        case UInt8(ascii: ":"):
            guard let r = try self.line("integer") else { return nil }
            return .integer(try self.integer(r, "integer"))
        case UInt8(ascii: "_"):
            guard let r = try self.line("null") else { return nil }
            guard r.isEmpty else {
                throw .malformed(
                    what: "null", offset: r.lowerBound, expected: "CRLF after '_'",
                    found: describe(self.bytes[r.lowerBound]))
            }
            return .null
        case UInt8(ascii: "#"):
            guard let r = try self.line("boolean") else { return nil }
            guard r.count == 1 else {
                throw .malformed(
                    what: "boolean", offset: r.lowerBound, expected: "'t' or 'f'", found: "\(r.count) bytes")
            }
            switch self.bytes[r.lowerBound] {
            case UInt8(ascii: "t"): return .boolean(true)
            case UInt8(ascii: "f"): return .boolean(false)
            case let other:
                throw .malformed(what: "boolean", offset: r.lowerBound, expected: "'t' or 'f'", found: describe(other))
            }
        case UInt8(ascii: ","):
            guard let r = try self.line("double") else { return nil }
            return .double(try self.double(r))
        case UInt8(ascii: "("):
            guard let r = try self.line("big number") else { return nil }
            var i = r.lowerBound
            if i < r.upperBound, self.bytes[i] == UInt8(ascii: "-") || self.bytes[i] == UInt8(ascii: "+") { i += 1 }
            guard i < r.upperBound else {
                throw .malformed(what: "big number", offset: i, expected: "digits", found: "end of line")
            }
            while i < r.upperBound {
                guard self.bytes[i] >= UInt8(ascii: "0"), self.bytes[i] <= UInt8(ascii: "9") else {
                    throw .malformed(
                        what: "big number", offset: i, expected: "decimal digit", found: describe(self.bytes[i]))
                }
                i += 1
            }
            return .bigNumber(self.copy(r))
        case UInt8(ascii: "$"):
            guard let r = try self.line("bulk string header") else { return nil }
            guard
                let length = try self.length(
                    r, "bulk string", limit: self.limits.maxBulkLength, allowNull: true, allowStreamed: true)
            else {
                return .null
            }
            guard let length else { return try self.streamedString() }
            guard let p = try self.payload(length, "bulk string") else { return nil }
            return .bulkString(self.copy(p))
        case UInt8(ascii: "!"):
            guard let r = try self.line("blob error header") else { return nil }
            guard
                let length = try self.length(
                    r, "blob error", limit: self.limits.maxBulkLength, allowNull: false, allowStreamed: false),
                let length
            else { return nil }  // unreachable: neither null nor streamed is allowed
            guard let p = try self.payload(length, "blob error") else { return nil }
            return .blobError(self.copy(p))
        case UInt8(ascii: "="):
            guard let r = try self.line("verbatim string header") else { return nil }
            guard
                let length = try self.length(
                    r, "verbatim string", limit: self.limits.maxBulkLength, allowNull: false, allowStreamed: false),
                let length
            else { return nil }
            guard length >= 4 else {
                throw .malformed(
                    what: "verbatim string", offset: r.lowerBound, expected: "length >= 4 (format and ':')",
                    found: "\(length)")
            }
            guard let p = try self.payload(length, "verbatim string") else { return nil }
            guard self.bytes[p.lowerBound + 3] == UInt8(ascii: ":") else {
                throw .malformed(
                    what: "verbatim string", offset: p.lowerBound + 3, expected: "':' after the 3-byte format",
                    found: describe(self.bytes[p.lowerBound + 3]))
            }
            return .verbatimString(
                format: self.copy(p.lowerBound..<p.lowerBound + 3), text: self.copy(p.lowerBound + 4..<p.upperBound))
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            let name = type == UInt8(ascii: "*") ? "array" : type == UInt8(ascii: "~") ? "set" : "push"
            if type == UInt8(ascii: ">"), depth > 0 {
                throw .malformed(
                    what: "push", offset: typeOffset, expected: "a push only at top level",
                    found: "a push nested at depth \(depth)")
            }
            guard let r = try self.line(name + " header") else { return nil }
            let isArray = type == UInt8(ascii: "*")
            guard
                let count = try self.length(
                    r, name, limit: self.limits.maxElements, allowNull: isArray,
                    allowStreamed: type != UInt8(ascii: ">"))
            else {
                return .null
            }
            try self.enter(depth: depth, offset: typeOffset)
            let elements: [RESPValue]
            if let count {
                guard let e = try self.elements(count, depth: depth + 1) else { return nil }
                elements = e
            } else {
                guard let e = try self.streamedElements(name, depth: depth + 1) else { return nil }
                elements = e
            }
            switch type {
            case UInt8(ascii: "*"): return .array(elements)
            case UInt8(ascii: "~"): return .set(elements)
            default:
                guard !elements.isEmpty else {
                    throw .malformed(
                        what: "push", offset: typeOffset, expected: "at least the kind element", found: "an empty push")
                }
                return .push(elements)
            }
        case UInt8(ascii: "%"), UInt8(ascii: "|"):
            let isMap = type == UInt8(ascii: "%")
            let name = isMap ? "map" : "attribute"
            guard let r = try self.line(name + " header") else { return nil }
            guard
                let pairs = try self.length(
                    r, name, limit: self.limits.maxElements / 2, allowNull: false, allowStreamed: isMap)
            else {
                return nil  // unreachable: null not allowed
            }
            try self.enter(depth: depth, offset: typeOffset)
            let elements: [RESPValue]
            if let pairs {
                // pairs <= maxElements / 2, so doubling it cannot overflow.
                guard let e = try self.elements(pairs * 2, depth: depth + 1) else { return nil }
                elements = e
            } else {
                guard let e = try self.streamedElements(name, depth: depth + 1) else { return nil }
                guard e.count % 2 == 0 else {
                    throw .malformed(
                        what: "streamed map", offset: typeOffset, expected: "an even number of elements",
                        found: "\(e.count)")
                }
                elements = e
            }
            let entries = stride(from: 0, to: elements.count, by: 2).map {
                RESPPair(key: elements[$0], value: elements[$0 + 1])
            }
            if isMap { return .map(entries) }
            // An attribute annotates the value that follows it.
            guard let annotated = try self.value(depth: depth + 1) else { return nil }
            return .attributed(attributes: entries, value: annotated)
        default:
            throw .malformed(what: "reply", offset: typeOffset, expected: "a RESP type byte", found: describe(type))
        }
    }

    func enter(depth: Int, offset: Int) throws(RESPError) {
        guard depth < self.limits.maxDepth else {
            throw .limitExceeded(what: "nesting depth", limit: self.limits.maxDepth, found: depth + 1, offset: offset)
        }
    }

    mutating func elements(_ count: Int, depth: Int) throws(RESPError) -> [RESPValue]? {
        var elements: [RESPValue] = []
        // Each element takes at least 3 bytes, so never reserve more than the bytes present could hold.
        elements.reserveCapacity(min(count, self.available / 3 + 1))
        for i in 0..<count {
            guard let element = try self.value(depth: depth) else {
                self.siblings(count - i - 1)
                return nil
            }
            elements.append(element)
        }
        return elements
    }

    /// Elements of `*?`, `~?` or `%?` up to the `.` terminator.
    mutating func streamedElements(_ name: String, depth: Int) throws(RESPError) -> [RESPValue]? {
        var elements: [RESPValue] = []
        while true {
            guard self.index < self.bytes.count else { return nil }
            if self.bytes[self.index] == UInt8(ascii: ".") {
                let at = self.index
                self.index += 1
                guard let r = try self.line("streamed \(name) end") else { return nil }
                guard r.isEmpty else {
                    throw .malformed(
                        what: "streamed \(name) end", offset: at, expected: "'.' CRLF", found: "\(r.count) extra bytes")
                }
                return elements
            }
            guard elements.count < self.limits.maxElements else {
                throw .limitExceeded(
                    what: "streamed \(name) element count", limit: self.limits.maxElements, found: elements.count + 1,
                    offset: self.index)
            }
            guard let element = try self.value(depth: depth) else {
                self.siblings(1)  // the terminator
                return nil
            }
            elements.append(element)
        }
    }

    /// Chunks `;<n>` of a `$?` string up to `;0`.
    mutating func streamedString() throws(RESPError) -> RESPValue? {
        var total: [UInt8] = []
        while true {
            guard self.index < self.bytes.count else { return nil }
            let at = self.index
            guard self.bytes[at] == UInt8(ascii: ";") else {
                throw .malformed(
                    what: "streamed string", offset: at, expected: "';' chunk header", found: describe(self.bytes[at]))
            }
            self.index += 1
            guard let r = try self.line("streamed string chunk header") else { return nil }
            guard
                let length = try self.length(
                    r, "streamed string chunk", limit: self.limits.maxBulkLength, allowNull: false, allowStreamed: false
                ),
                let length
            else { return nil }
            if length == 0 { return .bulkString(total) }
            let (grown, overflow) = total.count.addingReportingOverflow(length)
            guard !overflow, grown <= self.limits.maxBulkLength else {
                throw .limitExceeded(
                    what: "streamed string length", limit: self.limits.maxBulkLength, found: overflow ? .max : grown,
                    offset: at)
            }
            guard let p = try self.payload(length, "streamed string chunk") else {
                self.siblings(1)  // the final `;0` chunk
                return nil
            }
            total.append(contentsOf: UnsafeBufferPointer(rebasing: self.bytes[p]))
        }
    }

    /// `inf`, `-inf`, `nan`, `-nan`, or a decimal with optional fraction and exponent.
    func double(_ r: Range<Int>) throws(RESPError) -> Double {
        let text = String(decoding: UnsafeBufferPointer(rebasing: self.bytes[r]), as: UTF8.self)
        switch text {
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        case "nan", "-nan": return .nan
        default: break
        }
        var sawDigit = false
        for i in r {
            let b = self.bytes[i]
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): sawDigit = true
            case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): continue
            default:
                throw .malformed(
                    what: "double", offset: i, expected: "digit, sign, '.', 'e', inf or nan", found: describe(b))
            }
        }
        guard sawDigit, let value = Double(text), value.isFinite else {
            throw .malformed(
                what: "double", offset: r.lowerBound, expected: "a finite decimal number, inf or nan",
                found: "'\(text.prefix(40))'")
        }
        return value
    }
}

private let internedOK: [UInt8] = Array("OK".utf8)
private let internedQUEUED: [UInt8] = Array("QUEUED".utf8)

/// A printable description of one wire byte for error messages.
func describe(_ byte: UInt8) -> String {
    if byte >= 0x20, byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
    let hex = String(byte, radix: 16, uppercase: true)
    return "0x" + (hex.count == 1 ? "0" + hex : hex)
}
