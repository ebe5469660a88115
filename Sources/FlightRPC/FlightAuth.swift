internal import Glibc
public import GRPCWire
internal import FlightProto

/// Handshake authentication with one user name and password (`--auth-basic USER:PASS`): a client
/// authenticates once (HTTP Basic credentials in the Handshake headers, as pyarrow's
/// `authenticate_basic_token` sends them, or a `BasicAuth` message as the Handshake payload) and gets a bearer
/// token; every other call must carry `authorization: Bearer <token>` (or the token in `auth-token-bin`).
public struct FlightBasicAuth: Sendable {
    public let username: String
    private let password: String
    /// The bearer token issued to the user; random per server process.
    let token: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
        self.token = Self.randomToken()
    }

    /// Parses `USER:PASS`.
    ///
    /// - Throws: ``FlightRPCError/invalidArgument(_:)`` without a colon or with an empty user.
    public init(parsing text: String) throws(FlightRPCError) {
        let (username, password) = try Self.split(text)
        self.init(username: username, password: password)
    }

    /// Splits `USER:PASS` at the first colon.
    package static func split(_ text: String) throws(FlightRPCError) -> (username: String, password: String) {
        guard let colon = text.firstIndex(of: ":"), colon != text.startIndex else {
            throw .invalidArgument("--auth-basic expects USER:PASS")
        }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    package static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }

    /// Constant-time comparison, so that timing does not reveal how much of a secret matched.
    static func same(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8)
        let right = Array(rhs.utf8)
        var difference = UInt8(left.count == right.count ? 0 : 1)
        for index in 0..<min(left.count, right.count) { difference |= left[index] ^ right[index] }
        return difference == 0
    }

    func check(username: String, password: String) -> Bool {
        Self.same(username, self.username) && Self.same(password, self.password)
    }

    /// The user of a valid bearer token in `metadata`, else nil.
    func identity(of metadata: GRPCMetadata) -> String? {
        if let header = metadata["authorization"], header.hasPrefix("Bearer "),
           Self.same(String(header.dropFirst(7)), self.token) {
            return self.username
        }
        if let binary = metadata.binary("auth-token-bin"), Self.same(String(decoding: binary, as: UTF8.self), self.token) {
            return self.username
        }
        return nil
    }

    /// Whether an HTTP `Authorization` header value carries the user's credentials (`Basic …`) or the bearer
    /// token (`Bearer …`) — the node's HTTP endpoints accept either.
    package func acceptsHTTPAuthorization(_ header: String) -> Bool {
        if header.hasPrefix("Bearer ") { return Self.same(String(header.dropFirst(7)), self.token) }
        var metadata = GRPCMetadata()
        metadata.add("authorization", header)
        guard let (user, password) = Self.basicCredentials(metadata) else { return false }
        return self.check(username: user, password: password)
    }

    /// Credentials from an `authorization: Basic …` header.
    static func basicCredentials(_ metadata: GRPCMetadata) -> (String, String)? {
        guard let header = metadata["authorization"], header.hasPrefix("Basic "),
              let decoded = Base64.decode(Array(header.utf8.dropFirst(6)))
        else { return nil }
        let text = String(decoding: decoded, as: UTF8.self)
        guard let colon = text.firstIndex(of: ":") else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    /// Serves a Handshake: checks the credentials and answers with the bearer token (response header
    /// `authorization: Bearer …`, and as the payload when the client sent a `BasicAuth` payload).
    func handshake(_ call: GRPCServerCall, extraHeaders: GRPCMetadata) async throws {
        var headers = extraHeaders
        headers.add("authorization", "Bearer \(self.token)")
        if let (user, password) = Self.basicCredentials(call.context.metadata) {
            guard self.check(username: user, password: password) else {
                throw GRPCStatus(.unauthenticated, "invalid username or password")
            }
            call.sendInitialMetadata(headers)
            while try await call.receive() != nil {}
            return
        }
        guard let first = try await call.receive() else {
            throw GRPCStatus(.unauthenticated, "Handshake needs Basic credentials (header or BasicAuth payload)")
        }
        let request = try HandshakeMessage(serializedBytes: first[...])
        let credentials = try BasicAuth(serializedBytes: request.payload)
        guard self.check(username: credentials.username, password: credentials.password) else {
            throw GRPCStatus(.unauthenticated, "invalid username or password")
        }
        call.sendInitialMetadata(headers)
        try await call.send(HandshakeMessage(payload: Array(self.token.utf8)[...]).serializedBytes())
        while try await call.receive() != nil {}
    }
}

/// A hook around every Flight call: see the request headers, reject the call, add response headers, and
/// learn how the call ended.
public protocol FlightServerMiddleware: Sendable {
    /// Called before the handler. Throw (e.g. a ``GRPCStatus``) to reject the call; return headers to add
    /// to the response.
    func callStarted(_ context: FlightCallContext) async throws -> GRPCMetadata
    /// Called after the handler with the status the client gets.
    func callEnded(_ context: FlightCallContext, status: GRPCStatus) async
}
