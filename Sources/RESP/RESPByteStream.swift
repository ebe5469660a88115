internal import IOLoop

/// The outcome of one non-blocking read or write on a `RESPByteStream`.
public enum RESPIOResult: Sendable, Equatable {
    /// This many bytes were read or written (more than zero).
    case transferred(Int)
    /// Nothing can move until the socket is readable: the normal "no data yet" of a read, or a TLS write
    /// that must first read (handshake, renegotiation).
    case wantRead
    /// Nothing can move until the socket is writable: a full send buffer, or a TLS read that must first
    /// write.
    case wantWrite
    /// The peer closed the stream (reads only).
    case closed
}

/// The byte stream a RESP connection runs over: a connected, non-blocking socket, possibly wrapped (TLS).
///
/// RESP ships plain TCP and Unix-socket streams. For `valkeys://` another module supplies a TLS stream
/// through `RESPTLSStreamFactory` (Node plugs in the I/O layer's OpenSSL client stream).
/// All methods are called on RESP's event-loop thread only, one at a time, so implementations need no
/// locking of their own. Readiness is taken from `fileDescriptor`: the loop always watches readability and
/// calls `read` when it is readable; it watches writability only after a call answered `.wantWrite`, and
/// retries a write that answered `.wantRead` after the next read (OpenSSL's `SSL_ERROR_WANT_READ` and
/// `SSL_ERROR_WANT_WRITE` map to these directly).
public protocol RESPByteStream: AnyObject, Sendable {
    /// The socket whose readiness drives this stream.
    var fileDescriptor: Int32 { get }
    /// Reads up to `buffer.count` bytes.
    /// - Throws: `RESPError.io` (or a TLS error mapped to `RESPError`) when the stream failed.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(RESPError) -> RESPIOResult
    /// Writes a prefix of `bytes`.
    /// - Throws: `RESPError.io` (or a TLS error mapped to `RESPError`) when the stream failed.
    func write(_ bytes: UnsafeRawBufferPointer) throws(RESPError) -> RESPIOResult
    /// Closes the stream and its socket. Called exactly once.
    func close()
}

/// Makes TLS streams for `valkeys://` URLs.
public protocol RESPTLSStreamFactory: Sendable {
    /// Wraps the connected, non-blocking TCP socket `fileDescriptor` in a client TLS session for
    /// `serverName` (used for SNI and certificate verification). The handshake may complete later, inside
    /// the stream's first reads and writes. Called on RESP's event-loop thread.
    /// - Throws: a `RESPError` describing why TLS could not be set up.
    func makeStream(fileDescriptor: Int32, serverName: String) throws(RESPError) -> any RESPByteStream
}

/// A plain socket (TCP or Unix): the I/O layer's socket stream, its errors as `RESPError.io`.
// @unchecked Sendable: a RESPByteStream is used on its loop thread only, one call at a time (the protocol's
// contract), and nothing else holds `socket`, so the I/O layer's stream is never touched concurrently.
final class SocketStream: RESPByteStream, @unchecked Sendable {
    let endpoint: String
    private let socket: IOLoop.SocketStream

    init(fileDescriptor: Int32, endpoint: String) {
        self.socket = IOLoop.SocketStream(fileDescriptor: fileDescriptor)
        self.endpoint = endpoint
    }

    var fileDescriptor: Int32 { self.socket.fileDescriptor }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(RESPError) -> RESPIOResult {
        do {
            return RESPIOResult(try self.socket.read(into: buffer))
        } catch {
            throw RESPError(error, endpoint: self.endpoint)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(RESPError) -> RESPIOResult {
        do {
            return RESPIOResult(try self.socket.write(bytes))
        } catch {
            throw RESPError(error, endpoint: self.endpoint)
        }
    }

    func close() { self.socket.close() }
}

extension RESPIOResult {
    /// The I/O layer's outcome, case by case.
    init(_ result: IOResult) {
        switch result {
        case .transferred(let n): self = .transferred(n)
        case .wantRead: self = .wantRead
        case .wantWrite: self = .wantWrite
        case .closed: self = .closed
        }
    }
}
