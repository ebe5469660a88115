/// Why a request was refused, with the HTTP status it is answered with (RFC 9110 §15.5).
public enum HTTP1Error: Error, Equatable, Sendable, CustomStringConvertible {
    /// Malformed request line, header or framing (400).
    case badRequest(String)
    /// The request line is longer than the limit (414).
    case requestLineTooLong(limit: Int)
    /// The header block is larger than the limit, or has too many fields (431).
    case headersTooLarge(String)
    /// The Content-Length exceeds the body limit (413).
    case bodyTooLarge(length: Int, limit: Int)
    /// A transfer coding other than none (501): only Content-Length bodies are served.
    case unsupportedTransferEncoding(String)
    /// An HTTP version other than 1.0 and 1.1 (505).
    case versionNotSupported(String)
    /// The request did not arrive within the header timeout (408).
    case timeout

    /// The status code the error is answered with.
    public var status: Int {
        switch self {
        case .badRequest: return 400
        case .requestLineTooLong: return 414
        case .headersTooLarge: return 431
        case .bodyTooLarge: return 413
        case .unsupportedTransferEncoding: return 501
        case .versionNotSupported: return 505
        case .timeout: return 408
        }
    }

    /// One line saying what was wrong, sent as the refusal's body.
    public var description: String {
        switch self {
        case .badRequest(let why): return "bad request: \(why)"
        case .requestLineTooLong(let limit): return "request line longer than \(limit) bytes"
        case .headersTooLarge(let why): return "request headers too large: \(why)"
        case .bodyTooLarge(let length, let limit): return "request body of \(length) bytes exceeds the limit of \(limit)"
        case .unsupportedTransferEncoding(let coding):
            return "Transfer-Encoding '\(coding)' is not supported; send a Content-Length body"
        case .versionNotSupported(let version): return "HTTP version '\(version)' is not supported; use HTTP/1.1"
        case .timeout: return "the request did not arrive within the header timeout"
        }
    }
}
