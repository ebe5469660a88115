/// An HTTP/1.1 response: status, header fields and a body, serialized with a Content-Length.
public struct HTTP1Response: Sendable {
    /// The status code, e.g. 200.
    public var status: Int
    /// Extra header fields (Content-Length, Connection and Date are written by ``serialized(keepAlive:head:)``).
    public var headers: [(name: String, value: String)]
    /// The body (sent with its Content-Length).
    public var body: [UInt8]

    /// A response with `headers` and `body`.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A text response (`text/plain; charset=utf-8` unless `contentType` says otherwise).
    public init(status: Int, text: String, contentType: String = "text/plain; charset=utf-8") {
        self.init(status: status, headers: [("Content-Type", contentType)], body: Array(text.utf8))
    }

    /// The answer to a request refused by the parser (the connection closes after it).
    public init(error: HTTP1Error) {
        self.init(status: error.status, text: error.description + "\n")
    }

    /// The bytes on the wire. `head` leaves the body out (HEAD requests), keeping its Content-Length.
    public func serialized(keepAlive: Bool, head: Bool = false) -> [UInt8] {
        var text = "HTTP/1.1 \(self.status) \(Self.reason(self.status))\r\n"
        for (name, value) in self.headers {
            // Our own values never hold CR or LF; drop any that would (no header injection).
            guard !name.utf8.contains(where: { $0 < 0x21 || $0 == 0x3A }),
                !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A })
            else { continue }
            text += "\(name): \(value)\r\n"
        }
        text += "Content-Length: \(self.body.count)\r\n"
        text += keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n"
        var bytes = Array(text.utf8)
        if !head { bytes += self.body }
        return bytes
    }

    /// The reason phrase of `status`.
    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 301: return "Moved Permanently"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status"
        }
    }
}
