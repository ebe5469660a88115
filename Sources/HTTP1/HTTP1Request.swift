/// Limits of one request; every one has a default and is checked before the bytes it covers are kept.
public struct HTTP1Limits: Sendable, Equatable {
    /// Longest request line, CRLF excluded (default 8 KiB; beyond it 414).
    public var requestLine: Int
    /// Largest header block after the request line, CRLFs included (default 32 KiB; beyond it 431).
    public var headerBytes: Int
    /// Most header fields (default 100; beyond it 431).
    public var headerCount: Int
    /// Largest Content-Length (default 1 MiB; beyond it 413).
    public var body: Int

    /// Limits with the defaults above.
    public init(requestLine: Int = 8 << 10, headerBytes: Int = 32 << 10, headerCount: Int = 100, body: Int = 1 << 20) {
        self.requestLine = requestLine
        self.headerBytes = headerBytes
        self.headerCount = headerCount
        self.body = body
    }
}

/// One parsed HTTP/1.x request.
public struct HTTP1Request: Sendable, Equatable {
    /// Equal method, target, version, headers (in order) and body.
    public static func == (lhs: HTTP1Request, rhs: HTTP1Request) -> Bool {
        lhs.method == rhs.method && lhs.target == rhs.target && lhs.minorVersion == rhs.minorVersion
            && lhs.body == rhs.body && lhs.headers.count == rhs.headers.count
            && zip(lhs.headers, rhs.headers).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// The method token, e.g. `GET` (case-sensitive, RFC 9110 §9.1).
    public var method: String
    /// The request target as sent (origin form `/path?query`, or absolute form).
    public var target: String
    /// The target's path, percent-decoded (`/` when the target has none).
    public var path: String
    /// The query string after `?`, undecoded (empty when absent).
    public var query: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    /// Header fields in order, names lower-cased, values trimmed of surrounding spaces and tabs.
    public var headers: [(name: String, value: String)]
    /// The body (Content-Length bytes; empty without one).
    public var body: [UInt8]

    /// A request; `path` and `query` are split from `target` (the path percent-decoded).
    public init(method: String, target: String, minorVersion: Int = 1, headers: [(name: String, value: String)] = [],
                body: [UInt8] = []) {
        self.method = method
        self.target = target
        let (path, query) = Self.split(target)
        self.path = path
        self.query = query
        self.minorVersion = minorVersion
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name` (case-insensitive), if present.
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return self.headers.first { $0.name == lower }?.value
    }

    /// Whether the connection stays open after the response (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only
    /// with `Connection: keep-alive`).
    public var keepAlive: Bool {
        let tokens = self.headers.filter { $0.name == "connection" }
            .flatMap { $0.value.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: " \t") } }
        if tokens.contains("close") { return false }
        return self.minorVersion >= 1 || tokens.contains("keep-alive")
    }

    /// The query's `name=value` pairs, percent- and `+`-decoded (undecodable pairs are skipped).
    public var queryItems: [(name: String, value: String)] {
        guard !self.query.isEmpty else { return [] }
        return self.query.split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = PercentDecoding.decode(Substring(parts[0]), plusIsSpace: true) else { return nil }
            let value = parts.count > 1 ? PercentDecoding.decode(Substring(parts[1]), plusIsSpace: true) : ""
            guard let value else { return nil }
            return (name, value)
        }
    }

    /// The first value of query parameter `name`.
    public func queryValue(_ name: String) -> String? { self.queryItems.first { $0.name == name }?.value }

    static func split(_ target: String) -> (path: String, query: String) {
        var rest = Substring(target)
        if !rest.hasPrefix("/") {
            // Absolute form: drop scheme and authority.
            for prefix in ["http://", "https://"] where rest.hasPrefix(prefix) {
                rest = rest.dropFirst(prefix.count)
                rest = rest.firstIndex(of: "/").map { rest[$0...] } ?? "/"
            }
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let query: Substring
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        } else {
            query = ""
        }
        let path = PercentDecoding.decode(rest, plusIsSpace: false) ?? String(rest)
        return (path.isEmpty ? "/" : path, String(query))
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// `%XX` decoding of URL components.
public enum PercentDecoding {
    /// Decodes `%XX` escapes (and `+` as a space when `plusIsSpace`); nil for a bad escape or invalid UTF-8.
    public static func decode(_ text: Substring, plusIsSpace: Bool) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var bytes = text.utf8.makeIterator()
        while let byte = bytes.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = bytes.next().flatMap(Self.hex), let low = bytes.next().flatMap(Self.hex) else {
                    return nil
                }
                out.append(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace: out.append(0x20)
            default: out.append(byte)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
