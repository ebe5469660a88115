internal import GRPCWire

/// With `--auth-basic`, refuses the request messages of unauthenticated calls at their gRPC length prefix, before
/// GRPCWire buffers a byte of them: a unary request (GetFlightInfo, DoAction) would otherwise be read whole before
/// its handler could check the bearer token, so credentials would not bound what an anonymous peer makes the
/// server hold. A Handshake, which authenticates, carries a small message: it is admitted up to
/// ``handshakeMessageLimit``.
///
/// Admitted messages are passed on to `inner` (the node's memory admission), which then sees every release too.
struct FlightAuthAdmission: GRPCMessageAdmission {
    let auth: FlightBasicAuth
    let inner: (any GRPCMessageAdmission)?

    /// Largest Handshake message accepted before authentication (a `BasicAuth` or bearer payload is far smaller).
    static let handshakeMessageLimit = 64 << 10
    static let handshakePath = FlightServer.servicePath + "Handshake"

    func admit(path: String, metadata: GRPCMetadata, length: Int) -> GRPCStatus? {
        if path == Self.handshakePath {
            if length > Self.handshakeMessageLimit {
                return GRPCStatus(
                    .invalidArgument,
                    "a Handshake message is at most \(Self.handshakeMessageLimit) bytes (this one announced \(length))")
            }
        } else if self.auth.identity(of: metadata) == nil {
            let method = path.hasPrefix(FlightServer.servicePath) ? String(path.dropFirst(FlightServer.servicePath.count)) : path
            return FlightCallHooks.unauthenticated(method)
        }
        return self.inner?.admit(path: path, metadata: metadata, length: length)
    }

    func release(path: String, length: Int) {
        self.inner?.release(path: path, length: length)
    }
}
