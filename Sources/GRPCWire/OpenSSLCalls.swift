internal import COpenSSL
internal import Glibc

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

/// An OpenSSL `SSL_CTX`, with ALPN `h2` unless `offersH2` is false. The only owner of OpenSSL state besides
/// ``TLSSession`` and ``TLSClientStream``.
final class TLSContext: Sendable {
    // OpaquePointer is Sendable-less: keep the address as an integer; SSL_CTX is thread-safe after setup.
    private let address: UInt
    let isServer: Bool
    let serverName: String?
    /// Servers: ALPN `http/1.1` (and no ALPN at all) is accepted beside `h2` (the server has an HTTP/1.1 handler).
    let acceptsHTTP1: Bool

    var ctx: OpaquePointer? { OpaquePointer(bitPattern: self.address) }

    /// Builds a context from PEM files.
    /// - Throws: `.tls` naming the failing step and OpenSSL's reason.
    init(configuration: TLSConfiguration, isServer: Bool, offersH2: Bool = true, acceptsHTTP1: Bool = false)
        throws(GRPCWireError)
    {
        guard let ctx = SSL_CTX_new(isServer ? TLS_server_method() : TLS_client_method()) else {
            throw .tls(call: "SSL_CTX_new", reason: OpenSSLCalls.errorQueue())
        }
        self.address = UInt(bitPattern: ctx)
        self.isServer = isServer
        self.acceptsHTTP1 = isServer && acceptsHTTP1
        self.serverName = configuration.serverName
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        if let chain = configuration.certificateChainFile {
            guard SSL_CTX_use_certificate_chain_file(ctx, chain) == 1 else {
                throw .tls(call: "load certificate \(chain)", reason: OpenSSLCalls.errorQueue())
            }
        }
        if let key = configuration.privateKeyFile {
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1
            else {
                throw .tls(call: "load private key \(key)", reason: OpenSSLCalls.errorQueue())
            }
        }
        if let roots = configuration.trustRootsFile {
            guard SSL_CTX_load_verify_locations(ctx, roots, nil) == 1 else {
                throw .tls(call: "load trust roots \(roots)", reason: OpenSSLCalls.errorQueue())
            }
            SSL_CTX_set_verify(
                ctx, isServer ? (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) : SSL_VERIFY_PEER, nil)
        } else if !isServer {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                throw .tls(call: "load default trust roots", reason: OpenSSLCalls.errorQueue())
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        if !offersH2 {
            // No ALPN (RESP over TLS).
        } else if isServer {
            if acceptsHTTP1 {
                SSL_CTX_set_alpn_select_cb(ctx, tlsSelectALPNWithHTTP1, nil)
            } else {
                SSL_CTX_set_alpn_select_cb(ctx, tlsSelectALPN, nil)
            }
        } else {
            let protos: [UInt8] = [2, UInt8(ascii: "h"), UInt8(ascii: "2")]
            // Returns 0 on success (inverted convention).
            guard SSL_CTX_set_alpn_protos(ctx, protos, UInt32(protos.count)) == 0 else {
                throw .tls(call: "SSL_CTX_set_alpn_protos", reason: OpenSSLCalls.errorQueue())
            }
        }
    }

    deinit { SSL_CTX_free(self.ctx) }
}

private func tlsSelectALPN(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outlen: UnsafeMutablePointer<UInt8>?,
    _ input: UnsafePointer<UInt8>?, _ inlen: UInt32, _ arg: UnsafeMutableRawPointer?
) -> Int32 {
    // Walk the client's list for "h2".
    guard let input, let out, let outlen else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    var i = 0
    let count = Int(inlen)
    while i < count {
        let len = Int(input[i])
        if len == 2, i + 2 < count, input[i + 1] == UInt8(ascii: "h"), input[i + 2] == UInt8(ascii: "2") {
            out.pointee = input + i + 1
            outlen.pointee = 2
            return SSL_TLSEXT_ERR_OK
        }
        i += 1 + len
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}

/// As `tlsSelectALPN`, falling back to "http/1.1" when the client does not offer "h2" (a server with an HTTP/1.1
/// handler); a client offering neither is refused.
private func tlsSelectALPNWithHTTP1(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outlen: UnsafeMutablePointer<UInt8>?,
    _ input: UnsafePointer<UInt8>?, _ inlen: UInt32, _ arg: UnsafeMutableRawPointer?
) -> Int32 {
    if tlsSelectALPN(ssl, out, outlen, input, inlen, arg) == SSL_TLSEXT_ERR_OK { return SSL_TLSEXT_ERR_OK }
    guard let input, let out, let outlen else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let http1 = Array("http/1.1".utf8)
    var i = 0
    let count = Int(inlen)
    while i < count {
        let len = Int(input[i])
        if len == http1.count, i + 1 + len <= count, (0..<len).allSatisfy({ input[i + 1 + $0] == http1[$0] }) {
            out.pointee = input + i + 1
            outlen.pointee = UInt8(len)
            return SSL_TLSEXT_ERR_OK
        }
        i += 1 + len
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}

/// Result of a non-blocking handshake step.
enum TLSHandshakeResult {
    case done
    case wantRead
    case wantWrite
    case failed(String)
}

/// One TLS connection (an OpenSSL `SSL`), used only on its connection's loop thread.
final class TLSSession {
    private let ssl: OpaquePointer
    private let context: TLSContext
    private(set) var isEstablished = false
    /// The handshake chose ALPN `http/1.1` (or none) on a server that accepts it, not `h2`.
    private(set) var negotiatedHTTP1 = false

    init(context: TLSContext, fd: Int32, hostForClient: String?) throws(GRPCWireError) {
        guard let ssl = SSL_new(context.ctx) else { throw .tls(call: "SSL_new", reason: OpenSSLCalls.errorQueue()) }
        self.ssl = ssl
        self.context = context
        guard SSL_set_fd(ssl, fd) == 1 else { throw .tls(call: "SSL_set_fd", reason: OpenSSLCalls.errorQueue()) }
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            let name = context.serverName ?? hostForClient ?? ""
            if !name.isEmpty {
                _ = name.withCString {
                    SSL_ctrl(
                        ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name),
                        UnsafeMutableRawPointer(mutating: $0))
                }
                let isIP = name.contains(":") || name.allSatisfy { $0.isNumber || $0 == "." }
                let ok = isIP ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) : SSL_set1_host(ssl, name)
                guard ok == 1 else {
                    throw .tls(call: "set expected server name \(name)", reason: OpenSSLCalls.errorQueue())
                }
            }
            SSL_set_connect_state(ssl)
        }
    }

    deinit { SSL_free(self.ssl) }

    func handshake(fd: Int32) -> TLSHandshakeResult {
        ERR_clear_error()
        let rv = SSL_do_handshake(self.ssl)
        if rv == 1 {
            var proto: UnsafePointer<UInt8>?
            var len: UInt32 = 0
            SSL_get0_alpn_selected(self.ssl, &proto, &len)
            let h2 = proto != nil && len == 2 && proto?[0] == UInt8(ascii: "h") && proto?[1] == UInt8(ascii: "2")
            guard h2 || self.context.acceptsHTTP1 else { return .failed("peer did not negotiate ALPN h2") }
            self.negotiatedHTTP1 = !h2
            self.isEstablished = true
            return .done
        }
        switch SSL_get_error(self.ssl, rv) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        default:
            let verify = SSL_get_verify_result(self.ssl)
            let queue = OpenSSLCalls.errorQueue()
            if verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) {
                return .failed("certificate verification failed: \(String(cString: text)) \(queue)")
            }
            return .failed(queue)
        }
    }

    /// Reads decrypted bytes: count, 0 at close, -2 when it would block, -1 on error.
    func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        ERR_clear_error()
        let rv = SSL_read(self.ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if rv > 0 { return Int(rv) }
        switch SSL_get_error(self.ssl, rv) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return -2
        case SSL_ERROR_ZERO_RETURN: return 0
        default: return -1
        }
    }

    /// Writes bytes: count written, -2 when it would block, -1 on error.
    func write(fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard bytes.count > 0 else { return 0 }
        ERR_clear_error()
        let rv = SSL_write(self.ssl, bytes.baseAddress, Int32(min(bytes.count, 1 << 20)))
        if rv > 0 { return Int(rv) }
        switch SSL_get_error(self.ssl, rv) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return -2
        default: return -1
        }
    }

    func shutdown(fd: Int32) {
        if self.isEstablished { _ = SSL_shutdown(self.ssl) }
    }
}

/// A client TLS context for ``TLSClientStream``: trust roots (or OpenSSL's default store), an optional client
/// certificate, TLS 1.2 or newer, no ALPN. Build one and share it between streams.
public final class TLSClientContext: Sendable {
    let context: TLSContext

    /// Loads the PEM files of `configuration` (`trustRootsFile` nil: OpenSSL's default verify paths).
    /// - Throws: `GRPCWireError.tls` naming the file or call that failed and OpenSSL's reason.
    public init(configuration: TLSConfiguration) throws(GRPCWireError) {
        self.context = try TLSContext(configuration: configuration, isServer: false, offersH2: false)
    }
}

/// A client TLS session over a connected, non-blocking TCP socket, for byte-stream protocols (RESP).
///
/// The handshake runs inside the first `read`/`write` calls. The peer certificate chain is verified against
/// the context's trust roots and must match the server name (DNS name or IP address), which is also sent as
/// SNI. Not thread-safe: call it from one thread at a time (RESP's event-loop thread).
public final class TLSClientStream {
    /// The outcome of one non-blocking read or write.
    public enum IOResult: Sendable, Equatable {
        /// This many bytes moved (more than zero).
        case transferred(Int)
        /// Retry when the socket is readable.
        case wantRead
        /// Retry when the socket is writable.
        case wantWrite
        /// The peer closed the TLS session (reads only).
        case closed
    }

    /// The socket this session runs over (owned: `close` closes it).
    public let fileDescriptor: Int32
    /// The name the server certificate must match.
    public let serverName: String
    private var ssl: OpaquePointer?
    private let context: TLSContext
    private var handshakeDone = false

    /// Wraps `fileDescriptor` (connected, non-blocking) in a client session for `serverName` (the context's
    /// `serverName`, when set, wins). On failure the socket is left open for the caller to close.
    /// - Throws: `GRPCWireError.tls` when OpenSSL cannot create the session or accept the name.
    public init(fileDescriptor: Int32, context: TLSClientContext, serverName: String) throws(GRPCWireError) {
        // OpenSSL writes with write(2): a peer reset must not kill the process with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let name = context.context.serverName ?? serverName
        self.fileDescriptor = fileDescriptor
        self.serverName = name
        self.context = context.context
        guard let ssl = SSL_new(context.context.ctx) else {
            throw .tls(call: "SSL_new", reason: OpenSSLCalls.errorQueue())
        }
        self.ssl = ssl
        guard SSL_set_fd(ssl, fileDescriptor) == 1 else {
            throw .tls(call: "SSL_set_fd", reason: OpenSSLCalls.errorQueue())
        }
        // RESP retries a write with a longer buffer that may have moved (its output array grew).
        _ = SSL_ctrl(
            ssl, SSL_CTRL_MODE, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), nil)
        guard !name.isEmpty else { throw .tls(call: "client session", reason: "empty server name") }
        let isIP = name.contains(":") || name.allSatisfy { $0.isNumber || $0 == "." }
        if !isIP {
            _ = name.withCString {
                SSL_ctrl(
                    ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name),
                    UnsafeMutableRawPointer(mutating: $0))
            }
        }
        let ok = isIP ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) : SSL_set1_host(ssl, name)
        guard ok == 1 else {
            throw .tls(call: "set expected server name \(name)", reason: OpenSSLCalls.errorQueue())
        }
        SSL_set_connect_state(ssl)
    }

    deinit { if let ssl = self.ssl { SSL_free(ssl) } }

    /// Reads decrypted bytes into `buffer` (as many as are available, up to its size).
    /// - Throws: `GRPCWireError.tls` when the handshake fails (certificate verification failed: <reason>) or
    ///   the session breaks; `.systemCall` for socket errors.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(GRPCWireError) -> IOResult {
        guard let ssl = self.ssl else { throw .tls(call: "read", reason: "stream is closed") }
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .wantRead }
        var total = 0
        while total < buffer.count {
            ERR_clear_error()
            let rv = SSL_read(ssl, base + total, Int32(min(buffer.count - total, Int(Int32.max))))
            if rv > 0 {
                total += Int(rv)
                continue
            }
            let code = SSL_get_error(ssl, rv)
            if total > 0 && code != SSL_ERROR_SSL && code != SSL_ERROR_SYSCALL { break }
            switch code {
            case SSL_ERROR_WANT_READ: return .wantRead
            case SSL_ERROR_WANT_WRITE: return .wantWrite
            case SSL_ERROR_ZERO_RETURN: return .closed
            default:
                if total > 0 { return .transferred(total) }
                return try self.failure(code: code, operation: "read")
            }
        }
        self.handshakeDone = true
        return .transferred(total)
    }

    /// Writes a prefix of `bytes`. After `.wantRead`/`.wantWrite` the retry must pass at least the same bytes
    /// again (they may have moved).
    /// - Throws: `GRPCWireError.tls` when the handshake fails (certificate verification failed: <reason>) or
    ///   the session breaks; `.systemCall` for socket errors.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(GRPCWireError) -> IOResult {
        guard let ssl = self.ssl else { throw .tls(call: "write", reason: "stream is closed") }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .wantWrite }
        ERR_clear_error()
        let rv = SSL_write(ssl, base, Int32(min(bytes.count, 1 << 20)))
        if rv > 0 {
            self.handshakeDone = true
            return .transferred(Int(rv))
        }
        let code = SSL_get_error(ssl, rv)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        default: return try self.failure(code: code, operation: "write")
        }
    }

    /// Sends close_notify (best effort, non-blocking), frees the session and closes the socket. Idempotent.
    public func close() {
        guard let ssl = self.ssl else { return }
        if self.handshakeDone { _ = SSL_shutdown(ssl) }
        SSL_free(ssl)
        self.ssl = nil
        _ = Glibc.close(self.fileDescriptor)
    }

    private func failure(code: Int32, operation: String) throws(GRPCWireError) -> IOResult {
        guard let ssl = self.ssl else { throw .tls(call: operation, reason: "stream is closed") }
        let saved = errno
        let queue = OpenSSLCalls.errorQueue()
        let inHandshake = SSL_is_init_finished(ssl) != 1
        let call = inHandshake ? "handshake with \(self.serverName)" : "\(operation) from \(self.serverName)"
        let verify = SSL_get_verify_result(ssl)
        if inHandshake, verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) {
            throw .tls(call: call, reason: "certificate verification failed: \(String(cString: text))")
        }
        if code == SSL_ERROR_SYSCALL, saved != 0, saved != EAGAIN {
            throw .systemCall(name: "TLS \(operation) from \(self.serverName)", errno: saved)
        }
        if code == SSL_ERROR_SYSCALL || queue.contains("unexpected eof") {
            if !inHandshake { return .closed }
            throw .tls(call: call, reason: "the server closed the connection during the TLS handshake")
        }
        throw .tls(call: call, reason: queue)
    }
}

/// OpenSSL error-queue helpers.
enum OpenSSLCalls {
    /// Drains OpenSSL's error queue into one line.
    static func errorQueue() -> String {
        var parts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            parts.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return parts.isEmpty ? "no OpenSSL error recorded" : parts.joined(separator: "; ")
    }
}
