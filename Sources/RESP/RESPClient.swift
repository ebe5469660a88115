import Synchronization

/// A Valkey client: one shared, automatically pipelined connection for ordinary commands, plus dedicated
/// connections (a small idle pool) for WATCH transactions. Many tasks may call it at once; their commands
/// are written to the shared connection in batches.
///
/// When the connection drops, commands in flight fail with `RESPError.connectionClosed` (never silently
/// resent); the next command reconnects with exponential backoff and jitter (`RESPConfiguration.reconnect`).
public final class RESPClient: Sendable {
    /// The settings every connection of this client uses.
    public let configuration: RESPConfiguration

    private enum Slot {
        case idle
        case connecting([CheckedContinuation<Result<RESPConnection, RESPError>, Never>])
        case ready(RESPConnection)
    }

    private struct State {
        var slot = Slot.idle
        var closed = false
        var idleDedicated: [RESPConnection] = []
    }

    private let state = Mutex(State())
    private static let maxIdleDedicated = 4

    /// A client for `configuration`. Nothing connects until the first command.
    public init(configuration: RESPConfiguration) {
        self.configuration = configuration
    }

    /// A client for a `valkey://…` URL (see `RESPConfiguration.init(url:)`).
    /// - Throws: `RESPError.invalidURL`.
    public convenience init(url: String) throws(RESPError) {
        self.init(configuration: try RESPConfiguration(url: url))
    }

    deinit {
        let state = self.state.withLock { $0 }
        if case .ready(let connection) = state.slot { connection.close() }
        for connection in state.idleDedicated { connection.close() }
    }

    /// The executor of the event-loop thread that drives this client's sockets. Tasks that mostly await
    /// replies may prefer it (`Task(executorPreference: client.taskExecutor)`,
    /// `group.addTask(executorPreference:)`): a reply then resumes its caller on the same thread, saving a
    /// thread hop per reply. Code in such tasks must never block: that would stall every connection.
    public var taskExecutor: any TaskExecutor { RESPLoop.shared }

    // MARK: Commands

    /// Sends `command` on the shared connection and returns its reply.
    /// - Throws: `.server` for an error reply; `.connectionClosed` if the connection dropped with the command
    ///   in flight; `.timeout` after `commandTimeout`; `.reconnectFailed`/`.handshakeFailed` if no
    ///   connection could be made; `.clientClosed` after `close()`.
    public func send(_ command: RESPCommand) async throws(RESPError) -> RESPValue {
        var attempt = 0
        while true {
            let connection = try await self.sharedConnection()
            let result = await connection.send(command)
            // The connection closed before the command was queued: nothing was sent, so use a new one.
            if case .failure(.connectionClosed(_, _, 0)) = result, attempt < 3 {
                attempt += 1
                continue
            }
            return try result.get()
        }
    }

    /// Sends the command `name` with `arguments`; see `send(_:)` for errors.
    public func send(_ name: String, _ arguments: any RESPArgument...) async throws(RESPError) -> RESPValue {
        try await self.send(RESPCommand(name, arguments: arguments))
    }

    /// Sends `commands` back to back in one write and returns one result per command, in order. An error
    /// reply fails only its own command; a dropped connection fails every command not yet answered.
    /// - Throws: only when no connection could be obtained (see `send(_:)`).
    public func pipeline(_ commands: [RESPCommand]) async throws(RESPError) -> [Result<RESPValue, RESPError>] {
        var attempt = 0
        while true {
            let connection = try await self.sharedConnection()
            let results = await connection.send(batch: commands)
            if case .failure(.connectionClosed(_, _, 0)) = results.first, attempt < 3 {
                attempt += 1
                continue
            }
            return results
        }
    }

    /// Runs `commands` inside MULTI/EXEC on the shared connection (queued back to back, so no other
    /// caller's command is inside the transaction). Returns one result per command; an error inside the
    /// transaction fails only its command.
    /// - Throws: `.server` with code `EXECABORT` (its message names the first rejected command) when a
    ///   command was rejected at queue time; connection errors as for `send(_:)`.
    public func transaction(_ commands: [RESPCommand]) async throws(RESPError) -> [Result<RESPValue, RESPError>] {
        var attempt = 0
        while true {
            let connection = try await self.sharedConnection()
            do throws(RESPError) {
                guard let results = try await Self.execute(commands, on: connection) else {
                    throw .transactionAborted(attempts: 1)
                }
                return results
            } catch {
                // The connection closed before the transaction was queued: nothing ran, use a new connection.
                if case .connectionClosed(_, _, 0) = error, attempt < 3 {
                    attempt += 1
                    continue
                }
                throw error
            }
        }
    }

    /// MULTI, commands, EXEC as one batch. Nil when EXEC returned null (a WATCHed key changed).
    /// With `asking`, ASKING goes first: its flag lasts for the whole transaction (cluster ASK redirection).
    /// A command rejected at queue time with a cluster redirection or retry code is thrown as that error (the
    /// transaction did not run), so cluster routing can follow it.
    static func execute(
        _ commands: [RESPCommand], on connection: RESPConnection, asking: Bool = false
    ) async throws(RESPError) -> [Result<RESPValue, RESPError>]? {
        let prefix = asking ? [RESPCommand("ASKING"), RESPCommand("MULTI")] : [RESPCommand("MULTI")]
        let batch = prefix + commands + [RESPCommand("EXEC")]
        let results = await connection.send(batch: batch)
        guard let exec = results.last else { return [] }
        switch exec {
        case .failure(let error):
            if error.serverCode == "EXECABORT" {
                for (command, queued) in zip(commands, results.dropFirst(prefix.count)) {
                    if case .failure(let reason) = queued {
                        switch reason.serverCode {
                        case "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN": throw reason
                        default: break
                        }
                        throw .server(
                            code: "EXECABORT", message: "\(command.name) was rejected: \(reason.description)",
                            command: "EXEC")
                    }
                }
            }
            // A failure of MULTI (or ASKING) itself or of the connection explains EXEC's failure better.
            for result in results.prefix(prefix.count) { if case .failure(let first) = result { throw first } }
            throw error
        case .success(let value):
            if value.isNull { return nil }
            guard let replies = value.elements, replies.count == commands.count else {
                throw .unexpectedReply(command: "EXEC", expected: "\(commands.count) replies", found: value.summary)
            }
            return zip(commands, replies).map { command, reply in
                if let (code, message) = reply.errorParts {
                    return .failure(.server(code: code, message: message, command: command.name))
                }
                return .success(reply)
            }
        }
    }

    /// Runs `body` with a connection of its own (from a small idle pool), for state that must not be shared:
    /// WATCH, blocking commands. The connection returns to the pool afterwards if still open.
    /// - Throws: whatever `body` throws; connection errors as for `send(_:)`.
    public func withDedicatedConnection<T: Sendable>(
        _ body: (RESPDedicatedConnection) async throws(RESPError) -> T
    ) async throws(RESPError) -> T {
        let reused = self.state.withLock { $0.idleDedicated.popLast() }
        let connection: RESPConnection
        if let reused, reused.isOpen {
            connection = reused
        } else {
            connection = try await self.establish(options: self.connectionOptions()).get()
        }
        let result: Result<T, RESPError>
        do throws(RESPError) {
            result = .success(try await body(RESPDedicatedConnection(connection: connection)))
        } catch {
            result = .failure(error)
        }
        let keep =
            connection.isOpen
            && self.state.withLock { state in
                guard !state.closed, state.idleDedicated.count < Self.maxIdleDedicated else { return false }
                state.idleDedicated.append(connection)
                return true
            }
        if !keep { connection.close() }
        return try result.get()
    }

    /// An optimistic transaction: WATCH `keys`, let `body` read through the dedicated connection and return
    /// the commands to run, then MULTI/EXEC them. If a watched key changed (EXEC returned null), it starts
    /// over, up to `maxAttempts` times, with a short random backoff. If `body` returns no commands, nothing
    /// is executed and the result is empty.
    /// - Throws: `.transactionAborted` after `maxAttempts` aborted attempts; `.server(EXECABORT)` for a
    ///   command rejected at queue time; whatever `body` throws; connection errors as for `send(_:)`.
    public func watchTransaction(
        keys: [String], maxAttempts: Int = 10,
        _ body: (RESPDedicatedConnection) async throws(RESPError) -> [RESPCommand]
    ) async throws(RESPError) -> [Result<RESPValue, RESPError>] {
        try await self.withDedicatedConnection { connection throws(RESPError) in
            for attempt in 1...max(1, maxAttempts) {
                _ = try await connection.send(RESPCommand("WATCH", arguments: keys))
                let commands: [RESPCommand]
                do throws(RESPError) {
                    commands = try await body(connection)
                } catch {
                    _ = try? await connection.send(RESPCommand("UNWATCH"))
                    throw error
                }
                if commands.isEmpty {
                    _ = try await connection.send(RESPCommand("UNWATCH"))
                    return []
                }
                if let results = try await Self.execute(commands, on: connection.connection) { return results }
                if attempt < maxAttempts {
                    try? await Task.sleep(for: .microseconds(Int.random(in: 100...(500 * attempt))))
                }
            }
            throw .transactionAborted(attempts: max(1, maxAttempts))
        }
    }

    /// Runs `script` with EVALSHA (its SHA-1 was computed once, when the `RESPScript` was made). If the
    /// server does not know it (NOSCRIPT: first use, after SCRIPT FLUSH, a restart or a failover), it is
    /// loaded with SCRIPT LOAD and EVALSHA is sent again; NOSCRIPT means the script did not run, so this
    /// retry cannot run it twice.
    /// - Throws: `.server` for a script error; `.unexpectedReply` if SCRIPT LOAD returns another SHA-1;
    ///   connection errors as for `send(_:)`.
    public func evalScript(_ script: RESPScript, keys: [any RESPArgument] = [], arguments: [any RESPArgument] = [])
        async throws(RESPError) -> RESPValue
    {
        let command = script.command(keys: keys, arguments: arguments)
        do {
            return try await self.send(command)
        } catch  where error.serverCode == "NOSCRIPT" {
            try await self.load(script)
            return try await self.send(command)
        }
    }

    /// Runs many script calls as one pipeline (EVALSHA each). Calls answered NOSCRIPT did not run, so their
    /// scripts are loaded and just those calls are sent again, as a second pipeline, in their original order.
    /// Returns one result per call, in order.
    /// - Throws: only when no connection could be obtained or a script failed to load.
    public func evalPipeline(_ calls: [RESPScriptCall]) async throws(RESPError) -> [Result<RESPValue, RESPError>] {
        var results = try await self.pipeline(calls.map(\.command))
        let missing = results.indices.filter { results[$0].serverCode == "NOSCRIPT" }
        guard !missing.isEmpty else { return results }
        var loaded: Set<String> = []
        for index in missing where loaded.insert(calls[index].script.sha1).inserted {
            try await self.load(calls[index].script)
        }
        let retried = try await self.pipeline(missing.map { calls[$0].command })
        for (index, result) in zip(missing, retried) { results[index] = result }
        return results
    }

    /// Sends SCRIPT LOAD for `script` and checks the SHA-1 the server reports.
    /// - Throws: `.unexpectedReply` on a SHA-1 mismatch; errors as for `send(_:)`.
    public func load(_ script: RESPScript) async throws(RESPError) {
        let sha = try await self.send(RESPCommand("SCRIPT", "LOAD", script.source))
        guard sha.string == script.sha1 else {
            throw .unexpectedReply(command: "SCRIPT LOAD", expected: script.sha1, found: sha.summary)
        }
    }

    /// Closes every connection. Commands in flight fail with `.connectionClosed`; later calls throw
    /// `.clientClosed`.
    public func close() {
        let (slot, idle) = self.state.withLock { state in
            state.closed = true
            defer {
                state.slot = .idle
                state.idleDedicated = []
            }
            return (state.slot, state.idleDedicated)
        }
        if case .ready(let connection) = slot { connection.close() }
        for connection in idle { connection.close() }
    }

    // MARK: Connections

    func connectionOptions(
        push: (@Sendable (RESPValue) -> Void)? = nil, onClose: (@Sendable (RESPError) -> Void)? = nil
    ) -> RESPConnection.Options {
        var options = RESPConnection.Options()
        options.limits = self.configuration.limits
        options.sendBufferLimit = self.configuration.sendBufferLimit
        options.receiveBufferLimit = self.configuration.receiveBufferLimit
        options.commandTimeout = self.configuration.commandTimeout?.nanoseconds ?? 0
        options.connectTimeout = self.configuration.connectTimeout.nanoseconds
        options.keepAliveInterval = self.configuration.keepAliveInterval?.nanoseconds ?? 0
        options.pushHandler = push
        options.closeHandler = onClose
        return options
    }

    /// The shared connection, (re)connecting if needed. Concurrent callers wait for one connection attempt.
    func sharedConnection() async throws(RESPError) -> RESPConnection {
        enum Action {
            case use(RESPConnection)
            case wait
            case establish
            case closed
        }
        let action: Action = self.state.withLock { state in
            if state.closed { return .closed }
            switch state.slot {
            case .ready(let connection) where connection.isOpen: return .use(connection)
            case .connecting: return .wait
            case .ready, .idle:
                state.slot = .connecting([])
                return .establish
            }
        }
        switch action {
        case .use(let connection):
            return connection
        case .closed:
            throw .clientClosed
        case .wait:
            let result = await withCheckedContinuation {
                (continuation: CheckedContinuation<Result<RESPConnection, RESPError>, Never>) in
                let enqueued = self.state.withLock { state in
                    if case .connecting(var waiters) = state.slot {
                        waiters.append(continuation)
                        state.slot = .connecting(waiters)
                        return true
                    }
                    return false
                }
                if !enqueued {
                    continuation.resume(
                        returning: .failure(
                            .connectionClosed(
                                endpoint: self.configuration.endpoint.description, reason: "connection attempt ended",
                                commandsInFlight: 0)))
                }
            }
            if case .failure(.connectionClosed) = result { return try await self.sharedConnection() }
            return try result.get()
        case .establish:
            let result = await self.establish(options: self.connectionOptions(push: self.configuration.pushHandler))
            let (waiters, closed): ([CheckedContinuation<Result<RESPConnection, RESPError>, Never>], Bool) = self.state
                .withLock { state in
                    guard case .connecting(let waiters) = state.slot else { return ([], state.closed) }
                    if state.closed {
                        state.slot = .idle
                    } else if case .success(let connection) = result {
                        state.slot = .ready(connection)
                    } else {
                        state.slot = .idle
                    }
                    return (waiters, state.closed)
                }
            if closed {
                if case .success(let connection) = result { connection.close() }
                for waiter in waiters { waiter.resume(returning: .failure(.clientClosed)) }
                throw .clientClosed
            }
            for waiter in waiters { waiter.resume(returning: result) }
            return try result.get()
        }
    }

    /// Opens a connection and runs the handshake, retrying with backoff. Authentication and configuration
    /// errors are not retried.
    func establish(options: RESPConnection.Options) async -> Result<RESPConnection, RESPError> {
        let policy = self.configuration.reconnect
        var lastError = RESPError.clientClosed
        for attempt in 1...policy.maxAttempts {
            let delay = policy.delay(beforeAttempt: attempt)
            if delay > .zero { try? await Task.sleep(for: delay) }
            if self.state.withLock({ $0.closed }) { return .failure(.clientClosed) }
            do throws(RESPError) {
                if self.configuration.useTLS, self.configuration.tlsStreamFactory == nil {
                    throw .tlsUnavailable(endpoint: self.configuration.endpoint.description)
                }
                let tls = self.configuration.useTLS ? self.configuration.tlsStreamFactory : nil
                let connection = try await RESPConnection.open(self.configuration.endpoint, tls: tls, options: options)
                do throws(RESPError) {
                    try await self.handshake(connection)
                } catch {
                    connection.close(reason: "handshake failed")
                    throw error
                }
                return .success(connection)
            } catch {
                switch error {
                case .handshakeFailed, .invalidURL, .tlsUnavailable, .clientClosed:
                    return .failure(error)
                default:
                    lastError = error
                }
            }
        }
        return .failure(
            .reconnectFailed(
                endpoint: self.configuration.endpoint.description, attempts: policy.maxAttempts,
                lastError: lastError.description))
    }

    /// HELLO 3 [AUTH user pass] [SETNAME name], then SELECT when a database is configured.
    private func handshake(_ connection: RESPConnection) async throws(RESPError) {
        var arguments: [any RESPArgument] = ["3"]
        if let password = self.configuration.password {
            arguments += ["AUTH", self.configuration.username ?? "default", password]
        }
        if let name = self.configuration.clientName { arguments += ["SETNAME", name] }
        switch await connection.send(RESPCommand("HELLO", arguments: arguments)) {
        case .failure(.server(let code, let message, _)):
            let hint =
                code == "NOPROTO" || message.contains("unknown command")
                ? " (the server does not speak RESP3; Valkey/Redis 6+ required)" : ""
            throw .handshakeFailed(endpoint: connection.endpoint, step: "HELLO 3", code: code, message: message + hint)
        case .failure(let error):
            throw error
        case .success(let reply):
            guard reply["proto"]?.integer == 3 else {
                throw .unexpectedReply(command: "HELLO 3", expected: "a map with proto 3", found: reply.summary)
            }
        }
        if self.configuration.database != 0 {
            if case .failure(let error) = await connection.send(RESPCommand("SELECT", self.configuration.database)) {
                if case .server(let code, let message, _) = error {
                    throw .handshakeFailed(
                        endpoint: connection.endpoint, step: "SELECT \(self.configuration.database)", code: code,
                        message: message)
                }
                throw error
            }
        }
    }
}

/// A connection lent to one caller by `RESPClient.withDedicatedConnection` or `watchTransaction`.
public struct RESPDedicatedConnection: Sendable {
    let connection: RESPConnection

    /// Sends `command` and returns its reply.
    /// - Throws: as `RESPClient.send(_:)`.
    public func send(_ command: RESPCommand) async throws(RESPError) -> RESPValue {
        try await self.connection.send(command).get()
    }

    /// Sends the command `name` with `arguments`; see `send(_:)`.
    public func send(_ name: String, _ arguments: any RESPArgument...) async throws(RESPError) -> RESPValue {
        try await self.connection.send(RESPCommand(name, arguments: arguments)).get()
    }

    /// Sends `commands` back to back; one result per command.
    public func pipeline(_ commands: [RESPCommand]) async -> [Result<RESPValue, RESPError>] {
        await self.connection.send(batch: commands)
    }
}

/// One call of a script with its keys and arguments, for `RESPClient.evalPipeline(_:)`.
public struct RESPScriptCall: Sendable {
    /// The script to run.
    public let script: RESPScript
    /// The EVALSHA command of this call.
    public let command: RESPCommand

    /// A call of `script` with `keys` (KEYS) and `arguments` (ARGV).
    public init(_ script: RESPScript, keys: [any RESPArgument] = [], arguments: [any RESPArgument] = []) {
        self.script = script
        self.command = script.command(keys: keys, arguments: arguments)
    }
}

/// A Lua script run with EVALSHA. Its SHA-1 is computed once, here, in-process.
public struct RESPScript: Sendable, Hashable {
    /// The Lua source, sent by SCRIPT LOAD when the server lacks the script.
    public let source: String
    /// Lower-case hex SHA-1 of `source`, as SCRIPT LOAD reports it.
    public let sha1: String

    /// A script for `source`; computes its SHA-1 once.
    public init(_ source: String) {
        self.source = source
        self.sha1 = SHA1.hex(source.utf8)
    }

    /// The EVALSHA command for this script (for pipelines; on NOSCRIPT call `RESPClient.load(_:)` and resend).
    public func command(keys: [any RESPArgument], arguments: [any RESPArgument]) -> RESPCommand {
        RESPCommand("EVALSHA", arguments: [self.sha1, keys.count] + keys + arguments)
    }
}

extension Result where Failure == RESPError {
    /// The server error code of a failure, nil for success or non-server errors.
    var serverCode: String? {
        if case .failure(let error) = self { return error.serverCode }
        return nil
    }
}
