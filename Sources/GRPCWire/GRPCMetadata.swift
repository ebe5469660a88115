/// Request or response metadata: ordered (name, value) pairs. Names are lowercase; names ending in `-bin` carry
/// binary values (base64 on the wire), all others printable ASCII.
public struct GRPCMetadata: Sendable, Equatable, Sequence {
    /// A metadata value.
    public enum Value: Sendable, Equatable {
        /// A printable ASCII value (0x20 ... 0x7E).
        case string(String)
        /// A binary value (keys ending in `-bin`).
        case binary([UInt8])
    }

    /// The pairs in order.
    public private(set) var entries: [(name: String, value: Value)]

    /// Creates empty metadata.
    public init() { self.entries = [] }

    /// Creates metadata from ASCII pairs.
    public init(_ pairs: [(String, String)]) {
        self.entries = pairs.map { (name: $0.0.lowercased(), value: .string($0.1)) }
    }

    /// Appends an ASCII value; the name is lowercased.
    public mutating func add(_ name: String, _ value: String) {
        self.entries.append((name: name.lowercased(), value: .string(value)))
    }

    /// Appends a binary value; the name must end in `-bin` (it is lowercased).
    public mutating func add(_ name: String, binary value: [UInt8]) {
        self.entries.append((name: name.lowercased(), value: .binary(value)))
    }

    /// The first ASCII value for `name`.
    public subscript(_ name: String) -> String? {
        for e in self.entries where e.name == name {
            if case .string(let s) = e.value { return s }
        }
        return nil
    }

    /// The first binary value for `name`.
    public func binary(_ name: String) -> [UInt8]? {
        for e in self.entries where e.name == name {
            if case .binary(let b) = e.value { return b }
        }
        return nil
    }

    /// Whether there are no pairs.
    public var isEmpty: Bool { self.entries.isEmpty }

    /// Iterates the pairs in order.
    public func makeIterator() -> IndexingIterator<[(name: String, value: Value)]> {
        self.entries.makeIterator()
    }

    /// Equality of names and values in order.
    public static func == (lhs: GRPCMetadata, rhs: GRPCMetadata) -> Bool {
        lhs.entries.count == rhs.entries.count
            && zip(lhs.entries, rhs.entries).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// Reserved names that are never exposed as metadata (HTTP/2 pseudo-headers and gRPC transport headers).
    static func isReserved(_ name: String) -> Bool {
        if name.hasPrefix(":") { return true }
        switch name {
        case "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-status",
            "grpc-message", "user-agent", "host", "content-length":
            return true
        default: return false
        }
    }

    /// Adds a header received on the wire (binary values are base64-decoded; undecodable ones dropped).
    mutating func addWire(name: String, value: ArraySlice<UInt8>) {
        if name.hasSuffix("-bin") {
            // Values may be comma-joined; decode each part.
            var decoded: [UInt8] = []
            var ok = true
            for part in value.split(separator: 0x2C, omittingEmptySubsequences: false) {
                let trimmed = part.drop(while: { $0 == 0x20 })
                guard let bytes = Base64.decode(trimmed) else {
                    ok = false
                    break
                }
                decoded += bytes
            }
            if ok { self.entries.append((name: name, value: .binary(decoded))) }
        } else {
            self.entries.append((name: name, value: .string(String(decoding: value, as: UTF8.self))))
        }
    }

    /// The wire form of each pair (binary values base64 without padding).
    var wirePairs: [(String, String)] {
        self.entries.map { e in
            switch e.value {
            case .string(let s): return (e.name, s)
            case .binary(let b): return (e.name, Base64.encode(b))
            }
        }
    }
}

/// Base64 (RFC 4648 standard alphabet) as gRPC uses it for `-bin` metadata (also used by Node for
/// HTTP Basic credentials).
package enum Base64 {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Encodes without padding.
    package static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            for s in [18, 12, 6, 0] { out.append(self.alphabet[Int((v >> UInt32(s)) & 63)]) }
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let v = UInt32(bytes[i]) << 16
            out.append(self.alphabet[Int((v >> 18) & 63)])
            out.append(self.alphabet[Int((v >> 12) & 63)])
        } else if rest == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(self.alphabet[Int((v >> 18) & 63)])
            out.append(self.alphabet[Int((v >> 12) & 63)])
            out.append(self.alphabet[Int((v >> 6) & 63)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func value(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x41...0x5A: return UInt32(c - 0x41)
        case 0x61...0x7A: return UInt32(c - 0x61 + 26)
        case 0x30...0x39: return UInt32(c - 0x30 + 52)
        case 0x2B, 0x2D: return 62  // '+' and URL-safe '-'
        case 0x2F, 0x5F: return 63  // '/' and URL-safe '_'
        default: return nil
        }
    }

    /// Decodes padded or unpadded base64; `nil` for invalid input.
    package static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var chars = Array(text)
        while let last = chars.last, last == 0x3D { chars.removeLast() }
        guard chars.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in chars {
            guard let v = self.value(c) else { return nil }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
                acc &= (1 << UInt32(bits)) - 1
            }
        }
        return out
    }
}

/// `grpc-timeout` header values (PROTOCOLS.md §3).
public enum GRPCTimeout {
    /// Parses `1`–`8` digits followed by a unit `H M S m u n`; `nil` when malformed.
    public static func parse(_ value: String) -> Duration? {
        let bytes = Array(value.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        let digits = bytes.dropLast()
        guard digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        var amount: Int64 = 0
        for d in digits { amount = amount * 10 + Int64(d - 0x30) }
        switch unit {
        case UInt8(ascii: "H"): return .seconds(amount * 3600)
        case UInt8(ascii: "M"): return .seconds(amount * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    /// Encodes a positive duration with at most 8 digits, choosing the finest unit that fits (rounding up).
    public static func encode(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return "1n" }
        let nanos = Double(seconds) * 1e9 + Double(attoseconds) / 1e9
        let units: [(Double, String)] = [(1, "n"), (1e3, "u"), (1e6, "m"), (1e9, "S"), (60e9, "M"), (3600e9, "H")]
        for (scale, unit) in units {
            let value = (nanos / scale).rounded(.up)
            if value < 100_000_000 { return "\(Int64(value))\(unit)" }
        }
        return "99999999H"
    }
}
