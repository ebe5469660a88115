/// Every error the RESP module throws. Each case carries what was wrong and where, so `description`
/// alone tells a user what to do.
public enum RESPError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes received are not valid RESP: `offset` is relative to the start of the reply being parsed.
    case malformed(what: String, offset: Int, expected: String, found: String)
    /// A configured parser limit (bulk length, element count, nesting depth, line length) was exceeded.
    case limitExceeded(what: String, limit: Int, found: Int, offset: Int)
    /// The server answered with an error reply (`-CODE message` or a blob error).
    case server(code: String, message: String, command: String)
    /// A `valkey://`, `redis://`, `unix://` or `valkeys://` URL could not be used.
    case invalidURL(url: String, reason: String)
    /// The host name could not be resolved to an address.
    case resolveFailed(host: String, reason: String)
    /// A socket call failed; `errno` is the C error number.
    case io(operation: String, endpoint: String, errno: Int32)
    /// An operation did not finish within its configured time.
    case timeout(operation: String, endpoint: String, milliseconds: Int)
    /// The connection closed; commands that were written or queued on it fail with this error and were
    /// not resent (the server may or may not have executed them).
    case connectionClosed(endpoint: String, reason: String, commandsInFlight: Int)
    /// Reconnection gave up after `attempts` tries; `lastError` is the description of the last failure.
    case reconnectFailed(endpoint: String, attempts: Int, lastError: String)
    /// `HELLO 3`, `AUTH` or `SELECT` was rejected while setting up a connection.
    case handshakeFailed(endpoint: String, step: String, code: String, message: String)
    /// The server's reply did not have the shape the command requires.
    case unexpectedReply(command: String, expected: String, found: String)
    /// A `WATCH` transaction was aborted by concurrent changes more times than allowed.
    case transactionAborted(attempts: Int)
    /// The calling task was cancelled while waiting for the reply. The command may still have been executed;
    /// its reply is dropped. A cancelled blocking command (BLPOP …) keeps blocking its connection until the
    /// server answers it, so run blocking commands on a dedicated connection.
    case cancelled(command: String)
    /// The client (or subscriber) was closed by its owner.
    case clientClosed
    /// A `valkeys://` URL was used but no TLS stream factory was configured.
    case tlsUnavailable(endpoint: String)
    /// The keys of one cluster command, script or pipeline group map to different hash slots.
    case crossSlot(command: String, slots: [Int])
    /// No cluster node could be reached, or no node serves `slot` even after a topology refresh.
    case clusterUnavailable(slot: Int?, reason: String)
    /// A subscriber did not read its messages: `buffered` bytes were waiting, over `limit`
    /// (`RESPConfiguration.subscriptionBufferLimit`); the subscription ended.
    case subscriberTooSlow(buffered: Int, limit: Int)

    /// The error code of a server error (`WRONGTYPE`, `MOVED`, `NOSCRIPT` ...), or nil for other errors.
    public var serverCode: String? {
        if case .server(let code, _, _) = self { return code }
        if case .handshakeFailed(_, _, let code, _) = self { return code }
        return nil
    }

    /// One line saying what failed and what to do about it.
    public var description: String {
        switch self {
        case .malformed(let what, let offset, let expected, let found):
            return "malformed RESP \(what) at byte \(offset): expected \(expected), found \(found)"
        case .limitExceeded(let what, let limit, let found, let offset):
            return "RESP \(what) of \(found) at byte \(offset) exceeds the limit of \(limit); "
                + "raise the parser limit if the value is legitimate"
        case .server(let code, let message, let command):
            return "server error for \(command): \(code) \(message)"
        case .invalidURL(let url, let reason):
            return "invalid Valkey URL '\(url)': \(reason)"
        case .resolveFailed(let host, let reason):
            return "cannot resolve host '\(host)': \(reason)"
        case .io(let operation, let endpoint, let errno):
            return "\(operation) on \(endpoint) failed: errno \(errno) (\(errnoName(errno)))"
        case .timeout(let operation, let endpoint, let milliseconds):
            return "\(operation) on \(endpoint) timed out after \(milliseconds) ms"
        case .connectionClosed(let endpoint, let reason, let commandsInFlight):
            return "connection to \(endpoint) closed (\(reason)); "
                + "\(commandsInFlight) command(s) in flight failed and were not resent"
        case .reconnectFailed(let endpoint, let attempts, let lastError):
            return "could not reconnect to \(endpoint) after \(attempts) attempt(s): \(lastError)"
        case .handshakeFailed(let endpoint, let step, let code, let message):
            return
                "\(step) rejected by \(endpoint): \(code) \(message); check the user, password and database in the URL"
        case .unexpectedReply(let command, let expected, let found):
            return "unexpected reply to \(command): expected \(expected), found \(found)"
        case .transactionAborted(let attempts):
            return
                "WATCH transaction aborted by concurrent changes \(attempts) time(s); retry later or reduce contention"
        case .cancelled(let command):
            return "\(command) was cancelled while waiting for its reply; the server may still execute it"
        case .clientClosed:
            return "the client was closed; create a new one"
        case .crossSlot(let command, let slots):
            return "\(command) uses keys in different hash slots \(slots.prefix(4)); give them one {hash tag}"
        case .clusterUnavailable(let slot, let reason):
            return
                "cluster unavailable\(slot.map { " for slot \($0)" } ?? ""): \(reason); check that every slot is served"
        case .subscriberTooSlow(let buffered, let limit):
            return
                "the subscriber fell \(buffered) bytes behind (limit \(limit)); the subscription ended: read faster or "
                + "raise subscriptionBufferLimit"
        case .tlsUnavailable(let endpoint):
            return
                "\(endpoint) needs TLS but no TLS stream factory is configured (set RESPConfiguration.tlsStreamFactory)"
        }
    }
}

/// A short symbolic name for the errno values sockets commonly report.
func errnoName(_ code: Int32) -> String {
    switch code {
    case 104: return "ECONNRESET"
    case 110: return "ETIMEDOUT"
    case 111: return "ECONNREFUSED"
    case 113: return "EHOSTUNREACH"
    case 101: return "ENETUNREACH"
    case 32: return "EPIPE"
    case 2: return "ENOENT"
    case 13: return "EACCES"
    case 24: return "EMFILE"
    default: return "see errno(3)"
    }
}
