internal import COpenSSL
internal import Glibc

/// An OpenSSL `SSL_CTX` from PEM files, TLS 1.2 or newer, offering or accepting the ALPN protocols given (none:
/// no ALPN). The only owner of OpenSSL state besides ``TLSSession`` and ``TLSClientStream``. ALPN names are bytes
/// to this layer: which protocol runs on top is the caller's business.
package final class TLSContext: Sendable {
    // OpaquePointer is Sendable-less: keep the address as an integer; SSL_CTX is thread-safe after setup.
    private let address: UInt
    /// Server (accepting) or client (connecting) context.
    package let isServer: Bool
    /// Client: the name the server certificate must match instead of the host (also sent as SNI).
    package let serverName: String?
    /// ALPN protocols in order of preference; a handshake succeeds only when one of them was negotiated (or, with
    /// `alpnOptional`, when the peer offered no ALPN at all).
    package let alpn: [String]
    /// Servers: a client that offers no ALPN is accepted too (its session's `negotiatedProtocol` is nil).
    package let alpnOptional: Bool
    /// The ALPN list in wire form (length-prefixed names), kept alive for the server's select callback.
    private let alpnWire: ALPNList

    var ctx: OpaquePointer? { OpaquePointer(bitPattern: self.address) }

    /// Builds a context from PEM files: `certificateChainFile`/`privateKeyFile` (servers; clients for mTLS),
    /// `trustRootsFile` (clients: nil uses OpenSSL's default store; servers: set requires client certificates).
    /// - Throws: `IOLoopError.tls` naming the failing step (the file that did not load) and OpenSSL's reason.
    package init(
        isServer: Bool, certificateChainFile: String? = nil, privateKeyFile: String? = nil,
        trustRootsFile: String? = nil, serverName: String? = nil, alpn: [String] = [], alpnOptional: Bool = false
    ) throws(IOLoopError) {
        guard let ctx = SSL_CTX_new(isServer ? TLS_server_method() : TLS_client_method()) else {
            throw .tls(call: "SSL_CTX_new", reason: OpenSSLCalls.errorQueue())
        }
        self.address = UInt(bitPattern: ctx)
        self.isServer = isServer
        self.serverName = serverName
        self.alpn = alpn
        self.alpnOptional = isServer && alpnOptional
        self.alpnWire = ALPNList(alpn)
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        if let chain = certificateChainFile {
            guard SSL_CTX_use_certificate_chain_file(ctx, chain) == 1 else {
                throw .tls(call: "load certificate \(chain)", reason: OpenSSLCalls.errorQueue())
            }
        }
        if let key = privateKeyFile {
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1
            else {
                throw .tls(call: "load private key \(key)", reason: OpenSSLCalls.errorQueue())
            }
        }
        if let roots = trustRootsFile {
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
        if alpn.isEmpty {
            // No ALPN (e.g. RESP over TLS).
        } else if isServer {
            SSL_CTX_set_alpn_select_cb(ctx, tlsSelectALPN, Unmanaged.passUnretained(self.alpnWire).toOpaque())
        } else {
            let protos = self.alpnWire.bytes
            // Returns 0 on success (inverted convention).
            guard SSL_CTX_set_alpn_protos(ctx, protos, UInt32(protos.count)) == 0 else {
                throw .tls(call: "SSL_CTX_set_alpn_protos", reason: OpenSSLCalls.errorQueue())
            }
        }
    }

    deinit { SSL_CTX_free(self.ctx) }
}

/// ALPN names in wire form: each a length byte and the name (names longer than 255 bytes are left out).
private final class ALPNList: Sendable {
    let bytes: [UInt8]
    init(_ names: [String]) {
        var bytes: [UInt8] = []
        for name in names where !name.utf8.isEmpty && name.utf8.count <= 255 {
            bytes.append(UInt8(name.utf8.count))
            bytes += name.utf8
        }
        self.bytes = bytes
    }
}

/// The server's ALPN choice: its own first preference that the client offers.
private func tlsSelectALPN(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outlen: UnsafeMutablePointer<UInt8>?,
    _ input: UnsafePointer<UInt8>?, _ inlen: UInt32, _ arg: UnsafeMutableRawPointer?
) -> Int32 {
    guard let input, let out, let outlen, let arg else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let ours = Unmanaged<ALPNList>.fromOpaque(arg).takeUnretainedValue().bytes
    let count = Int(inlen)
    var o = 0
    while o < ours.count {
        let wanted = Int(ours[o])
        var i = 0
        while i < count {
            let len = Int(input[i])
            if len == wanted, i + 1 + len <= count {
                var same = true
                for k in 0..<len where input[i + 1 + k] != ours[o + 1 + k] {
                    same = false
                    break
                }
                if same {
                    out.pointee = input + i + 1
                    outlen.pointee = UInt8(len)
                    return SSL_TLSEXT_ERR_OK
                }
            }
            i += 1 + len
        }
        o += 1 + wanted
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}

/// Result of a non-blocking handshake step.
package enum TLSHandshakeResult {
    /// Established (with one of the context's ALPN protocols, when it has any).
    case done
    /// Call again when the socket is readable.
    case wantRead
    /// Call again when the socket is writable.
    case wantWrite
    /// The handshake failed: why, in one line.
    case failed(String)
}

/// One TLS connection (an OpenSSL `SSL`) over a socket the caller owns, used only on its connection's loop thread.
package final class TLSSession {
    private let ssl: OpaquePointer
    private let context: TLSContext
    /// The handshake completed.
    package private(set) var isEstablished = false
    /// The ALPN protocol negotiated, once established (nil: none).
    package private(set) var negotiatedProtocol: String?

    /// A session over `fd` (server or client as its context; a client verifies `hostForClient` unless the
    /// context names a server).
    /// - Throws: `IOLoopError.tls` when OpenSSL cannot create the session or accept the name.
    package init(context: TLSContext, fd: Int32, hostForClient: String?) throws(IOLoopError) {
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

    /// One non-blocking handshake step.
    package func handshake(fd: Int32) -> TLSHandshakeResult {
        ERR_clear_error()
        let rv = SSL_do_handshake(self.ssl)
        if rv == 1 {
            var proto: UnsafePointer<UInt8>?
            var len: UInt32 = 0
            SSL_get0_alpn_selected(self.ssl, &proto, &len)
            let negotiated = proto.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(len)), as: UTF8.self) }
            if !self.context.alpn.isEmpty && !(negotiated == nil && self.context.alpnOptional) {
                guard let negotiated, self.context.alpn.contains(negotiated) else {
                    return .failed("peer did not negotiate ALPN \(self.context.alpn.joined(separator: " or "))")
                }
            }
            self.negotiatedProtocol = negotiated
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
    package func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
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
    package func write(fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard bytes.count > 0 else { return 0 }
        ERR_clear_error()
        let rv = SSL_write(self.ssl, bytes.baseAddress, Int32(min(bytes.count, 1 << 20)))
        if rv > 0 { return Int(rv) }
        switch SSL_get_error(self.ssl, rv) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return -2
        default: return -1
        }
    }

    /// Sends close_notify when established (best effort; the caller closes the socket).
    package func shutdown(fd: Int32) {
        if self.isEstablished { _ = SSL_shutdown(self.ssl) }
    }
}

/// A client TLS context for ``TLSClientStream``: trust roots (or OpenSSL's default store), an optional client
/// certificate, TLS 1.2 or newer, no ALPN. Build one and share it between streams.
package final class TLSClientContext: Sendable {
    let context: TLSContext

    /// Loads the PEM files (`trustRoots` nil: OpenSSL's default verify paths; `certificateChain`/`privateKey`:
    /// a client certificate for servers that require one); `serverName` replaces each stream's server name.
    /// - Throws: `IOLoopError.tls` naming the file or call that failed and OpenSSL's reason.
    package init(
        trustRoots: String?, serverName: String? = nil, certificateChain: String? = nil, privateKey: String? = nil
    ) throws(IOLoopError) {
        self.context = try TLSContext(
            isServer: false, certificateChainFile: certificateChain, privateKeyFile: privateKey,
            trustRootsFile: trustRoots, serverName: serverName)
    }
}

/// A client TLS session over a connected, non-blocking TCP socket, for byte-stream protocols (e.g. RESP).
///
/// The handshake runs inside the first `read`/`write` calls. The peer certificate chain is verified against
/// the context's trust roots and must match the server name (DNS name or IP address), which is also sent as
/// SNI. Not thread-safe: call it from one thread at a time (its event-loop thread).
package final class TLSClientStream: ByteStream {
    /// The socket this session runs over (owned: `close` closes it).
    package let fileDescriptor: Int32
    /// The name the server certificate must match.
    package let serverName: String
    private var ssl: OpaquePointer?
    private let context: TLSContext
    private var handshakeDone = false

    /// Wraps `fileDescriptor` (connected, non-blocking) in a client session for `serverName` (the context's
    /// `serverName`, when set, wins). On failure the socket is left open for the caller to close.
    /// - Throws: `IOLoopError.tls` when OpenSSL cannot create the session or accept the name.
    package init(fileDescriptor: Int32, context: TLSClientContext, serverName: String) throws(IOLoopError) {
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
    /// - Throws: `IOLoopError.tls` when the handshake fails (certificate verification failed: <reason>) or
    ///   the session breaks; `IOLoopError.systemCall` for socket errors.
    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(IOLoopError) -> IOResult {
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
    /// - Throws: `IOLoopError.tls` when the handshake fails (certificate verification failed: <reason>) or
    ///   the session breaks; `IOLoopError.systemCall` for socket errors.
    package func write(_ bytes: UnsafeRawBufferPointer) throws(IOLoopError) -> IOResult {
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
    package func close() {
        guard let ssl = self.ssl else { return }
        if self.handshakeDone { _ = SSL_shutdown(ssl) }
        SSL_free(ssl)
        self.ssl = nil
        _ = Glibc.close(self.fileDescriptor)
    }

    private func failure(code: Int32, operation: String) throws(IOLoopError) -> IOResult {
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
package enum OpenSSLCalls {
    /// Drains OpenSSL's error queue into one line.
    package static func errorQueue() -> String {
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
