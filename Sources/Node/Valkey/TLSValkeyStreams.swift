internal import IOLoop
public import RESP

/// Supplies RESP's `valkeys://` streams from the I/O layer's OpenSSL client (``TLSClientStream``): the server
/// certificate is verified against `caFile` (or OpenSSL's default store) and must match the host name.
public struct ValkeyTLSStreamFactory: RESPTLSStreamFactory {
    private let context: TLSClientContext

    /// Loads the trust roots (and the client certificate, for mTLS) once.
    /// - Parameters:
    ///   - caFile: PEM trust roots; nil uses OpenSSL's default verify paths (the system store).
    ///   - serverName: the name the certificate must match instead of the URL's host.
    ///   - certificateChain, privateKey: PEM client certificate and key, for servers that require one.
    /// - Throws: `RESPError.connectionClosed` whose reason names the file that could not be loaded.
    public init(
        caFile: String? = nil, serverName: String? = nil, certificateChain: String? = nil, privateKey: String? = nil
    ) throws(RESPError) {
        do {
            self.context = try TLSClientContext(
                trustRoots: caFile, serverName: serverName, certificateChain: certificateChain, privateKey: privateKey)
        } catch {
            throw .connectionClosed(
                endpoint: serverName ?? "valkeys", reason: "TLS setup failed: \(error)", commandsInFlight: 0)
        }
    }

    /// Wraps the connected socket in a TLS client session (the handshake happens in the first reads and writes).
    /// - Throws: `RESPError.connectionClosed` with the TLS reason when OpenSSL cannot create the session.
    public func makeStream(fileDescriptor: Int32, serverName: String) throws(RESPError) -> any RESPByteStream {
        do {
            return ValkeyTLSStream(
                try TLSClientStream(fileDescriptor: fileDescriptor, context: self.context, serverName: serverName))
        } catch {
            throw ValkeyTLSStream.mapped(error, serverName: serverName)
        }
    }
}

/// RESP's view of one ``TLSClientStream``.
// @unchecked Sendable: RESP calls a stream only on its event-loop thread, one call at a time
// (RESPByteStream's contract), and nothing else holds `stream`, so its SSL object is never used concurrently.
final class ValkeyTLSStream: RESPByteStream, @unchecked Sendable {
    private let stream: TLSClientStream

    init(_ stream: TLSClientStream) { self.stream = stream }

    var fileDescriptor: Int32 { self.stream.fileDescriptor }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(RESPError) -> RESPIOResult {
        do {
            return Self.mapped(try self.stream.read(into: buffer))
        } catch {
            throw Self.mapped(error, serverName: self.stream.serverName)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(RESPError) -> RESPIOResult {
        do {
            return Self.mapped(try self.stream.write(bytes))
        } catch {
            throw Self.mapped(error, serverName: self.stream.serverName)
        }
    }

    func close() { self.stream.close() }

    private static func mapped(_ result: IOResult) -> RESPIOResult {
        switch result {
        case .transferred(let n): return .transferred(n)
        case .wantRead: return .wantRead
        case .wantWrite: return .wantWrite
        case .closed: return .closed
        }
    }

    /// One line: `TLS handshake with HOST failed: certificate verification failed: <reason>` and the like.
    static func mapped(_ error: IOLoopError, serverName: String) -> RESPError {
        .connectionClosed(endpoint: serverName, reason: error.description, commandsInFlight: 0)
    }
}

extension RESPConfiguration {
    /// Parses `url` (see `RESPConfiguration(url:)`); for `valkeys://` and `rediss://` also installs a
    /// ``ValkeyTLSStreamFactory`` trusting `caFile` (nil: the system store) with an optional client certificate.
    /// - Throws: `RESPError.invalidURL` for a bad URL or a PEM file that cannot be loaded (the reason names it).
    public static func valkey(
        url: String, caFile: String? = nil, certificateChain: String? = nil, privateKey: String? = nil
    ) throws(RESPError) -> RESPConfiguration {
        var configuration = try RESPConfiguration(url: url)
        if configuration.useTLS {
            do throws(RESPError) {
                configuration.tlsStreamFactory = try ValkeyTLSStreamFactory(
                    caFile: caFile, certificateChain: certificateChain, privateKey: privateKey)
            } catch {
                if case .connectionClosed(_, let reason, _) = error { throw .invalidURL(url: url, reason: reason) }
                throw error
            }
        }
        return configuration
    }
}
