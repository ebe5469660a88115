/// A pure, bounded HTTP/1.1 request parser (RFC 9112): request line, header fields, Content-Length bodies.
///
/// It keeps no state between calls: give it everything received and not yet consumed; it returns the first
/// complete request and how many bytes it took, nil when more bytes are needed, or throws when the bytes can never
/// become an acceptable request. Every limit is checked against the bytes available before anything is kept, so
/// the caller never needs to hold more than `requestLine + headerBytes + body` (plus a read) per connection.
public enum HTTP1Parser {
    /// Leading empty lines ignored before a request line (RFC 9112 §2.2), at most this many bytes of them.
    static let maxLeadingEmptyLines = 8

    /// Parses the first request in `buffer`.
    /// - Returns: the request and the bytes it used (leading empty lines included), or nil when incomplete.
    /// - Throws: ``HTTP1Error`` naming the limit or the malformed part; the connection must then answer with
    ///   `error.status` and close.
    public static func parse(_ buffer: ArraySlice<UInt8>, limits: HTTP1Limits = HTTP1Limits())
        throws(HTTP1Error) -> (request: HTTP1Request, consumed: Int)?
    {
        let end = buffer.endIndex
        var start = buffer.startIndex
        // Empty lines before the request line.
        var skipped = 0
        while start < end, buffer[start] == 0x0D || buffer[start] == 0x0A {
            skipped += 1
            if skipped > 2 * Self.maxLeadingEmptyLines { throw .badRequest("too many empty lines before the request line") }
            start += 1
        }
        guard start < end else { return nil }

        // Request line, within `limits.requestLine` bytes plus its CRLF.
        let lineScanEnd = Self.limitedEnd(start, end, limits.requestLine + 2)
        guard let lf = Self.firstIndex(of: 0x0A, in: buffer, start, lineScanEnd) else {
            if end - start > limits.requestLine + 1 { throw .requestLineTooLong(limit: limits.requestLine) }
            try Self.checkRequestLinePrefix(buffer[start..<end])
            return nil
        }
        guard lf > start, buffer[lf - 1] == 0x0D else { throw .badRequest("the request line must end with CRLF") }
        guard lf - 1 - start <= limits.requestLine else { throw .requestLineTooLong(limit: limits.requestLine) }
        let (method, target, minor) = try Self.requestLine(buffer[start..<(lf - 1)])

        // Header fields, until the empty line.
        var headers: [(name: String, value: String)] = []
        var position = lf + 1
        let headerStart = position
        while true {
            let used = position - headerStart
            let scanEnd = Self.limitedEnd(position, end, limits.headerBytes - used + 2)
            guard let next = Self.firstIndex(of: 0x0A, in: buffer, position, scanEnd) else {
                if end - headerStart > limits.headerBytes + 1 {
                    throw .headersTooLarge("more than \(limits.headerBytes) bytes")
                }
                return nil
            }
            guard next > position, buffer[next - 1] == 0x0D else {
                throw .badRequest("header lines must end with CRLF")
            }
            if next - headerStart > limits.headerBytes + 1 {
                throw .headersTooLarge("more than \(limits.headerBytes) bytes")
            }
            let line = buffer[position..<(next - 1)]
            position = next + 1
            if line.isEmpty { break }
            guard headers.count < limits.headerCount else {
                throw .headersTooLarge("more than \(limits.headerCount) fields")
            }
            headers.append(try Self.field(line))
        }

        // Framing: Content-Length only.
        if let coding = headers.first(where: { $0.name == "transfer-encoding" }) {
            throw .unsupportedTransferEncoding(String(coding.value.prefix(64)))
        }
        var length = 0
        var sawLength = false
        for field in headers where field.name == "content-length" {
            let value = try Self.contentLength(field.value, limit: limits.body)
            if sawLength && value != length { throw .badRequest("conflicting Content-Length fields") }
            length = value
            sawLength = true
        }
        if minor == 1 && !headers.contains(where: { $0.name == "host" }) {
            throw .badRequest("an HTTP/1.1 request needs a Host header")
        }
        let (bodyEnd, overflow) = position.addingReportingOverflow(length)
        guard !overflow else { throw .bodyTooLarge(length: length, limit: limits.body) }
        guard bodyEnd <= end else { return nil }
        let request = HTTP1Request(method: method, target: target, minorVersion: minor, headers: headers,
                                   body: Array(buffer[position..<bodyEnd]))
        return (request, bodyEnd - buffer.startIndex)
    }

    /// `start + count`, capped at `end` (no overflow for huge counts).
    private static func limitedEnd(_ start: Int, _ end: Int, _ count: Int) -> Int {
        let (sum, overflow) = start.addingReportingOverflow(max(0, count))
        return overflow ? end : min(end, sum)
    }

    private static func firstIndex(of byte: UInt8, in buffer: ArraySlice<UInt8>, _ from: Int, _ to: Int) -> Int? {
        var i = from
        while i < to {
            if buffer[i] == byte { return i }
            i += 1
        }
        return nil
    }

    /// Fails early on an incomplete request line that can never become valid (e.g. binary garbage).
    private static func checkRequestLinePrefix(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) {
        for byte in bytes.prefix(32) {
            if byte == 0x20 { return }
            guard Self.isTokenByte(byte) else { throw .badRequest("the request line does not start with a method") }
        }
    }

    /// `method SP request-target SP HTTP-version` (RFC 9112 §3).
    private static func requestLine(_ line: ArraySlice<UInt8>) throws(HTTP1Error) -> (String, String, Int) {
        guard let firstSpace = line.firstIndex(of: 0x20) else { throw .badRequest("the request line has no spaces") }
        let method = line[line.startIndex..<firstSpace]
        guard !method.isEmpty, method.allSatisfy(Self.isTokenByte) else {
            throw .badRequest("the method is not a token")
        }
        let afterMethod = line.index(after: firstSpace)
        guard let secondSpace = line[afterMethod...].firstIndex(of: 0x20) else {
            throw .badRequest("the request line has no HTTP version")
        }
        let target = line[afterMethod..<secondSpace]
        guard !target.isEmpty, target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .badRequest("the request target is empty or has a control character or space")
        }
        let version = line[line.index(after: secondSpace)...]
        let text = String(decoding: version.prefix(16), as: UTF8.self)
        switch text {
        case "HTTP/1.1" where version.count == 8: break
        case "HTTP/1.0" where version.count == 8: break
        default:
            if version.count >= 6, version.starts(with: Array("HTTP/".utf8)),
                version.dropFirst(5).allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E })
            {
                throw .versionNotSupported(text)
            }
            throw .badRequest("the HTTP version is malformed")
        }
        let minor = version.last == UInt8(ascii: "1") ? 1 : 0
        guard target.first == UInt8(ascii: "/") || target.starts(with: Array("http://".utf8))
            || target.starts(with: Array("https://".utf8)) || (target.count == 1 && target.first == UInt8(ascii: "*"))
        else { throw .badRequest("the request target must be a path") }
        return (String(decoding: method, as: UTF8.self), String(decoding: target, as: UTF8.self), minor)
    }

    /// `field-name ":" OWS field-value OWS` (RFC 9112 §5); obsolete line folding is refused.
    private static func field(_ line: ArraySlice<UInt8>) throws(HTTP1Error) -> (name: String, value: String) {
        guard let first = line.first, first != 0x20, first != 0x09 else {
            throw .badRequest("obsolete line folding in a header field")
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
            throw .badRequest("a header field has no colon")
        }
        let name = line[line.startIndex..<colon]
        guard !name.isEmpty, name.allSatisfy(Self.isTokenByte) else {
            throw .badRequest("a header field name is not a token (no space before the colon)")
        }
        var value = line[line.index(after: colon)...]
        while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
        while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
        guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
            throw .badRequest("a header field value has a control character")
        }
        let lowered = name.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }
        return (String(decoding: lowered, as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    /// A Content-Length value: 1*DIGIT, at most `limit`.
    private static func contentLength(_ text: String, limit: Int) throws(HTTP1Error) -> Int {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw .badRequest("Content-Length is not a number")
        }
        var value = 0
        for digit in text.utf8 {
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(Int(digit - 0x30))
            guard !o1, !o2, sum <= limit else { throw .bodyTooLarge(length: o1 || o2 ? .max : sum, limit: limit) }
            value = sum
        }
        return value
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
