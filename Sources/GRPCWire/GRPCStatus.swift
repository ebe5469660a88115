/// A gRPC status: one of the 17 codes plus an optional message. Thrown by handlers and returned by calls.
public struct GRPCStatus: Error, Equatable, Sendable, CustomStringConvertible {
    /// The 17 gRPC status codes (`grpc-status` values 0 ... 16).
    public enum Code: Int, Sendable, CaseIterable, CustomStringConvertible {
        /// Not an error.
        case ok = 0
        /// The operation was cancelled, typically by the caller.
        case cancelled = 1
        /// Unknown error (e.g. a handler threw a non-status error).
        case unknown = 2
        /// The client specified an invalid argument.
        case invalidArgument = 3
        /// The deadline expired before the operation completed.
        case deadlineExceeded = 4
        /// Some requested entity was not found.
        case notFound = 5
        /// The entity a client tried to create already exists.
        case alreadyExists = 6
        /// The caller lacks permission.
        case permissionDenied = 7
        /// A resource (e.g. message size, quota) is exhausted.
        case resourceExhausted = 8
        /// The system is not in a state required for the operation.
        case failedPrecondition = 9
        /// The operation was aborted (concurrency conflict).
        case aborted = 10
        /// The operation was attempted past the valid range.
        case outOfRange = 11
        /// The operation is not implemented or supported (also: unknown method).
        case unimplemented = 12
        /// Internal error (also: unparsable messages).
        case `internal` = 13
        /// The service is currently unavailable; retrying may help.
        case unavailable = 14
        /// Unrecoverable data loss or corruption.
        case dataLoss = 15
        /// The request lacks valid authentication credentials.
        case unauthenticated = 16

        /// The canonical upper-case name, e.g. `DEADLINE_EXCEEDED`.
        public var description: String {
            switch self {
            case .ok: return "OK"
            case .cancelled: return "CANCELLED"
            case .unknown: return "UNKNOWN"
            case .invalidArgument: return "INVALID_ARGUMENT"
            case .deadlineExceeded: return "DEADLINE_EXCEEDED"
            case .notFound: return "NOT_FOUND"
            case .alreadyExists: return "ALREADY_EXISTS"
            case .permissionDenied: return "PERMISSION_DENIED"
            case .resourceExhausted: return "RESOURCE_EXHAUSTED"
            case .failedPrecondition: return "FAILED_PRECONDITION"
            case .aborted: return "ABORTED"
            case .outOfRange: return "OUT_OF_RANGE"
            case .unimplemented: return "UNIMPLEMENTED"
            case .internal: return "INTERNAL"
            case .unavailable: return "UNAVAILABLE"
            case .dataLoss: return "DATA_LOSS"
            case .unauthenticated: return "UNAUTHENTICATED"
            }
        }
    }

    /// The status code.
    public var code: Code
    /// The human-readable message (decoded from `grpc-message`), empty when absent.
    public var message: String

    /// Creates a status.
    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    /// The OK status.
    public static let ok = GRPCStatus(.ok)

    /// `CODE: message`.
    public var description: String { self.message.isEmpty ? "\(self.code)" : "\(self.code): \(self.message)" }

    /// Maps a received `grpc-status` header value; values that are not a decimal 0 ... 16 map to UNKNOWN.
    public static func code(fromHeader value: String) -> Code {
        guard !value.isEmpty, value.utf8.count <= 2, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let number = Int(value), let code = Code(rawValue: number)
        else { return .unknown }
        return code
    }

    /// The status a client reports when a response lacks `grpc-status` (PROTOCOLS.md §3, HTTP status mapping).
    public static func fromHTTPStatus(_ status: Int) -> GRPCStatus {
        let code: Code
        switch status {
        case 400: code = .internal
        case 401: code = .unauthenticated
        case 403: code = .permissionDenied
        case 404: code = .unimplemented
        case 429, 502, 503, 504: code = .unavailable
        default: code = .unknown
        }
        return GRPCStatus(code, "HTTP status \(status) without grpc-status")
    }

    /// A stream the server refused before processing it (RST_STREAM REFUSED_STREAM, or a stream above the last
    /// stream id of a GOAWAY): the call had no effect, so it can be retried on a new connection.
    public static let refusedStream = GRPCStatus(.unavailable, "stream refused by peer (REFUSED_STREAM)")

    /// The status a call ends with when its stream is reset with the HTTP/2 error `errorCode`.
    public static func fromResetCode(_ errorCode: UInt32) -> GRPCStatus {
        switch errorCode {
        case 0x7: return .refusedStream
        case 0x8: return GRPCStatus(.cancelled, "stream cancelled by peer (RST_STREAM CANCEL)")
        case 0xB: return GRPCStatus(.resourceExhausted, "peer sent ENHANCE_YOUR_CALM")
        case 0xC: return GRPCStatus(.permissionDenied, "peer sent INADEQUATE_SECURITY")
        default: return GRPCStatus(.internal, "stream reset by peer with HTTP/2 error \(errorCode)")
        }
    }
}

/// Percent-encoding of `grpc-message` values (PROTOCOLS.md §3).
public enum GRPCMessageEncoding {
    /// Longest encoded `grpc-message` a server sends (bytes): gRPC clients reject header blocks over 8–16 KiB, and
    /// a status that cannot be sent leaves the call hanging.
    public static let maxEncodedLength = 4096

    /// The marker that ends a message cut at `limit`.
    public static let truncationMarker = " ...(truncated)"

    /// Encodes UTF-8 text: bytes 0x20 ... 0x7E except `%` pass through, all others become `%XX` (uppercase hex).
    /// The result is at most `limit` bytes: a longer message is cut at a character boundary and ends with
    /// ``truncationMarker``.
    public static func encode(_ message: String, limit: Int = maxEncodedLength) -> String {
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        let marker = Array(Self.truncationMarker.utf8)
        let budget = max(0, limit - marker.count)
        var out: [UInt8] = []
        out.reserveCapacity(min(message.utf8.count, limit))
        var lastBoundary = 0
        var truncated = false
        for b in message.utf8 {
            // A scalar starts at every byte that is not a continuation byte.
            if b & 0xC0 != 0x80 { lastBoundary = out.count }
            let width = b >= 0x20 && b <= 0x7E && b != 0x25 ? 1 : 3
            if out.count + width > budget {
                truncated = true
                break
            }
            if width == 1 {
                out.append(b)
            } else {
                out.append(0x25)
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            }
        }
        if truncated {
            // Short messages that merely exceed the budget by the marker still fit whole.
            if message.utf8.count * 3 <= limit || Self.encodedLength(message) <= limit {
                return Self.encode(message, limit: Int.max)
            }
            out.removeLast(out.count - lastBoundary)
            out += marker
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func encodedLength(_ message: String) -> Int {
        var n = 0
        for b in message.utf8 { n += b >= 0x20 && b <= 0x7E && b != 0x25 ? 1 : 3 }
        return n
    }

    /// Decodes a received value. Never fails: broken escapes are kept as-is, invalid UTF-8 is replaced.
    public static func decode(_ value: some Collection<UInt8>) -> String {
        let bytes = Array(value)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x25, i + 2 < bytes.count, let hi = Self.hexValue(bytes[i + 1]),
                let lo = Self.hexValue(bytes[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}
