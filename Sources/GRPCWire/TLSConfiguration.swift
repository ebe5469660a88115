internal import IOLoop

/// TLS settings for a server or client (PEM files).
public struct TLSConfiguration: Sendable {
    /// PEM certificate chain presented by this side (required for servers, optional client certificate for mTLS).
    public var certificateChainFile: String?
    /// PEM private key for `certificateChainFile`.
    public var privateKeyFile: String?
    /// PEM trust roots used to verify the peer. Servers with roots require and verify client certificates (mTLS).
    public var trustRootsFile: String?
    /// Client: the name the server certificate must match (also sent as SNI). Defaults to the host.
    public var serverName: String?

    /// Server configuration: certificate chain and key; `clientTrustRoots` enables mTLS.
    public static func server(certificateChain: String, privateKey: String, clientTrustRoots: String? = nil)
        -> TLSConfiguration
    {
        TLSConfiguration(
            certificateChainFile: certificateChain, privateKeyFile: privateKey, trustRootsFile: clientTrustRoots)
    }

    /// Client configuration: trust roots (nil: OpenSSL's default store), the expected server name, and an
    /// optional client certificate.
    public static func client(
        trustRoots: String?, serverName: String? = nil, certificateChain: String? = nil, privateKey: String? = nil
    ) -> TLSConfiguration {
        TLSConfiguration(
            certificateChainFile: certificateChain, privateKeyFile: privateKey, trustRootsFile: trustRoots,
            serverName: serverName)
    }
}

extension TLSContext {
    /// A context from `configuration`: a server (accepting ALPN `h2`; with `acceptsHTTP1` also `http/1.1` and
    /// clients without ALPN, for the server's HTTP/1.1 handler) or a client (offering `h2`).
    /// - Throws: `GRPCWireError.tls` naming the file or call that failed and OpenSSL's reason.
    static func grpc(_ configuration: TLSConfiguration, isServer: Bool, acceptsHTTP1: Bool = false)
        throws(GRPCWireError) -> TLSContext
    {
        let http1 = isServer && acceptsHTTP1
        do {
            return try TLSContext(
                isServer: isServer, certificateChainFile: configuration.certificateChainFile,
                privateKeyFile: configuration.privateKeyFile, trustRootsFile: configuration.trustRootsFile,
                serverName: configuration.serverName, alpn: http1 ? ["h2", "http/1.1"] : ["h2"], alpnOptional: http1)
        } catch {
            throw GRPCWireError(error)
        }
    }
}

extension TLSSession {
    /// The handshake chose ALPN `http/1.1` (or none) on a server that accepts it, not `h2`.
    var negotiatedHTTP1: Bool { self.isEstablished && self.negotiatedProtocol != "h2" }
}
