internal import Glibc
internal import IOLoop
import Synchronization

/// Monotonic time in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// The I/O layer's loop all RESP connections of the process share (one thread, ticking every 10 ms for
/// command deadlines; it is also the clients' `taskExecutor`).
enum RESPLoop {
    static let group = EventLoopGroup.processWide(count: 1, tickInterval: .milliseconds(10))
    static var shared: EventLoop { Self.group.loops[0] }
}

/// One connection to one server: a socket driven by the I/O layer's event loop, a FIFO of commands awaiting
/// replies, and an outbound buffer that callers append to and the loop writes in batches.
///
/// Replies are matched to commands in order, skipping pushes (handed to `pushHandler`). When the connection
/// drops, every command queued or in flight fails with `RESPError.connectionClosed`; nothing is resent.
///
/// Bounds: unsent command bytes stay within `sendBufferLimit` (callers suspend until the socket takes bytes;
/// one caller's command always fits); the bytes of a partial reply within `receiveBufferLimit` (the buffer grows
/// with the bytes that arrive, never to an announced length); a partial reply is parsed again only once the
/// bytes it needs at least (``RESPParser/parse(_:minimumLength:)``) have arrived.
final class RESPConnection: ByteStreamHandler, Sendable {
    struct Options: Sendable {
        var limits = RESPParser.Limits()
        /// Unsent command bytes before callers suspend.
        var sendBufferLimit = 64 << 20
        /// Largest partial reply held (the read buffer's size limit).
        var receiveBufferLimit = 1 << 30
        /// Per-command timeout in nanoseconds; 0 disables it.
        var commandTimeout: UInt64 = 0
        /// Connect timeout in nanoseconds.
        var connectTimeout: UInt64 = 5_000_000_000
        /// Idle time after which a PING is sent; 0 disables keep-alive.
        var keepAliveInterval: UInt64 = 0
        var pushHandler: (@Sendable (RESPValue) -> Void)?
        var closeHandler: (@Sendable (RESPError) -> Void)?
    }

    private enum Waiter {
        case single(CheckedContinuation<Result<RESPValue, RESPError>, Never>)
        case batch(CheckedContinuation<[Result<RESPValue, RESPError>], Never>)
        /// Keep-alive PING: the reply is dropped, but a missing reply closes the connection.
        case keepAlive
    }

    private struct Pending {
        var waiter: Waiter?
        /// Identifies the entry for cancellation (0: not cancellable).
        var id: UInt64 = 0
        var name: String
        /// A batch's commands, for their names in error messages (nil for a single command; shares storage
        /// with the caller's array, so nothing is copied).
        var commands: [RESPCommand]?
        var results: [Result<RESPValue, RESPError>] = []
        var deadline: UInt64
        var expected: Int { self.commands?.count ?? 1 }
    }

    private enum Phase {
        case connecting(CheckedContinuation<Result<RESPConnection, RESPError>, Never>, deadline: UInt64)
        case open
        case closed(RESPError)
    }

    private struct State {
        var phase: Phase
        var outbound: [UInt8] = []
        /// Command bytes queued and not yet written (`outbound` plus the loop's unwritten bytes).
        var queuedBytes = 0
        /// Callers waiting for `queuedBytes` to fall below the limit.
        var sendWaiters: [CheckedContinuation<Bool, Never>] = []
        var flushScheduled = false
        var pending: [Pending] = []
        var head = 0
        var lastActivity: UInt64 = monotonicNanoseconds()
    }

    private struct IO {
        var readBuffer = [UInt8](repeating: 0, count: IO.initialCapacity)
        var start = 0
        var end = 0
        var unwritten: [UInt8] = []
        var unwrittenOffset = 0
        var watchingWritable = false
        /// The last write answered `.wantWrite`: retry when writable.
        var writeNeedsWritable = false
        /// The last write answered `.wantRead`: retry after the next read.
        var writeNeedsReadable = false
        /// The last read answered `.wantWrite`: read again when writable.
        var readNeedsWritable = false
        /// The replies of the previous read, emptied: the next read appends to its storage.
        var spareValues: [RESPValue] = []
        /// Bytes from `start` the partial reply needs at least before parsing it again can succeed.
        var needed = 0
        /// The descriptor's registration with the loop.
        var registration: UInt64 = 0
        /// Times the buffered bytes were parsed (for tests of incremental parsing).
        var parseAttempts = 0
        static let initialCapacity = 64 << 10
    }

    let endpoint: String
    let options: Options
    private let loop: EventLoop
    private let stream: any RESPByteStream
    private let parser: RESPParser
    private let state: Mutex<State>
    private let io = Mutex(IO())
    private let nextID = Atomic<UInt64>(1)

    private init(
        endpoint: String, stream: any RESPByteStream, options: Options, loop: EventLoop,
        continuation: CheckedContinuation<Result<RESPConnection, RESPError>, Never>
    ) {
        self.endpoint = endpoint
        self.stream = stream
        self.options = options
        self.loop = loop
        self.parser = RESPParser(limits: options.limits)
        self.state = Mutex(
            State(phase: .connecting(continuation, deadline: monotonicNanoseconds() &+ options.connectTimeout)))
    }

    /// The loop this connection runs on.
    static var loop: EventLoop { RESPLoop.shared }

    /// Connects to `endpoint` (TCP/Unix, wrapped by `tls` when given). Names are resolved off the loop.
    /// - Throws: `RESPError.resolveFailed`, `.io` (e.g. ECONNREFUSED), `.timeout`, or the TLS factory's error.
    static func open(_ endpoint: RESPEndpoint, tls: (any RESPTLSStreamFactory)?, options: Options)
        async throws(RESPError) -> RESPConnection
    {
        let address = try await resolve(endpoint)
        let name = endpoint.description
        let loop = Self.loop
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<RESPConnection, RESPError>, Never>) in
            loop.execute { runner in
                do throws(RESPError) {
                    let fd = try startConnect(address, endpoint: name)
                    let stream: any RESPByteStream
                    if let tls, case .tcp(let host, _) = endpoint {
                        do throws(RESPError) {
                            stream = try tls.makeStream(fileDescriptor: fd, serverName: host)
                        } catch {
                            _ = Glibc.close(fd)
                            throw error
                        }
                    } else {
                        stream = SocketStream(fileDescriptor: fd, endpoint: name)
                    }
                    let connection = RESPConnection(
                        endpoint: name, stream: stream, options: options, loop: loop, continuation: continuation)
                    do throws(IOLoopError) {
                        let id = try runner.register(
                            fd: fd, events: Readiness.readable | Readiness.writable, handler: connection)
                        connection.io.withLock { $0.registration = id }
                    } catch {
                        stream.close()
                        throw RESPError(error, endpoint: name)
                    }
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// True until the connection closed or failed.
    var isOpen: Bool {
        self.state.withLock { if case .open = $0.phase { true } else { false } }
    }

    /// Sends one command and waits for its reply. A top-level error reply becomes `.failure(.server)`.
    /// Cancelling the calling task fails the command with `.cancelled` at once; if it was already sent it may
    /// still run (its reply is dropped when it arrives). A task cancelled before the call sends nothing.
    func send(_ command: RESPCommand) async -> Result<RESPValue, RESPError> {
        let id = self.nextID.add(1, ordering: .relaxed).oldValue
        let size = command.encoded.count
        await self.reserveSendCapacity(size)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // A caller cancelled before sending sends nothing.
                if Task.isCancelled {
                    self.wrote(size)  // returns the reservation
                    continuation.resume(returning: .failure(.cancelled(command: command.name)))
                    return
                }
                var pending = Pending(
                    waiter: .single(continuation), name: command.name, commands: nil, deadline: self.deadline())
                pending.id = id
                if let error = self.enqueue(command.encoded, pending, reserved: size) {
                    continuation.resume(returning: .failure(error))
                } else if Task.isCancelled {
                    self.cancel(id)
                }
            }
        } onCancel: {
            self.cancel(id)
        }
    }

    /// Sends commands back to back (no other caller's command between them) and waits for all replies.
    func send(batch commands: [RESPCommand]) async -> [Result<RESPValue, RESPError>] {
        if commands.isEmpty { return [] }
        let id = self.nextID.add(1, ordering: .relaxed).oldValue
        let size = commands.reduce(0) { $0 + $1.encoded.count }
        await self.reserveSendCapacity(size)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled {
                    self.wrote(size)  // returns the reservation
                    let cancelled = commands.map { Result<RESPValue, RESPError>.failure(.cancelled(command: $0.name)) }
                    continuation.resume(returning: cancelled)
                    return
                }
                var pending = Pending(
                    waiter: .batch(continuation), name: commands[0].name, commands: commands,
                    deadline: self.deadline())
                pending.id = id
                pending.results.reserveCapacity(commands.count)
                if let error = self.enqueue(commands, pending, reserved: size) {
                    continuation.resume(returning: Array(repeating: .failure(error), count: commands.count))
                } else if Task.isCancelled {
                    self.cancel(id)
                }
            }
        } onCancel: {
            self.cancel(id)
        }
    }

    /// Fails the waiting entry `id` with `.cancelled`; its reply will be dropped. Idempotent.
    private func cancel(_ id: UInt64) {
        let found: (Waiter, Int, String)? = self.state.withLock { state in
            var i = state.pending.count - 1
            while i >= state.head {
                if state.pending[i].id == id {
                    guard let waiter = state.pending[i].waiter else { return nil }
                    state.pending[i].waiter = nil
                    return (waiter, state.pending[i].expected, state.pending[i].name)
                }
                i -= 1
            }
            return nil
        }
        guard let (waiter, count, name) = found else { return }
        Self.resume(waiter, with: Array(repeating: .failure(.cancelled(command: name)), count: count))
    }

    /// Writes a command that the server answers only with pushes (SUBSCRIBE family in RESP3).
    /// - Throws: `RESPError.connectionClosed` if the connection is closed.
    func sendWithoutReply(_ command: RESPCommand) throws(RESPError) {
        if let error = self.enqueue(command.encoded, nil, reserved: 0) { throw error }
    }

    /// Closes the connection; queued and in-flight commands fail with `connectionClosed`.
    func close(reason: String = "closed by the client") {
        self.loop.execute { runner in
            self.fail(.connectionClosed(endpoint: self.endpoint, reason: reason, commandsInFlight: 0), runner: runner)
        }
    }

    /// Command bytes queued and not yet written (at most about `sendBufferLimit` plus one command per caller).
    var queuedBytes: Int { self.state.withLock { $0.queuedBytes } }

    /// Why the connection closed; nil while it is connecting or open.
    var closedBecause: RESPError? {
        self.state.withLock { state in
            if case .closed(let error) = state.phase { return error }
            return nil
        }
    }

    /// Callers suspended until the queue drains.
    var suspendedSenders: Int { self.state.withLock { $0.sendWaiters.count } }

    /// Bytes the read buffer holds room for (it grows with what arrives, up to `receiveBufferLimit`).
    var receiveBufferCapacity: Int { self.io.withLock { $0.readBuffer.count } }

    /// Times received bytes were parsed so far.
    var parseAttempts: Int { self.io.withLock { $0.parseAttempts } }

    /// Reserves `bytes` of the send queue, suspending while `sendBufferLimit` or more command bytes wait for the
    /// socket (a server that does not read, a slow network): callers cannot queue unbounded memory, and the queue
    /// holds at most the limit plus the last command admitted. Returns at once on a connection that is not open
    /// (the enqueue then reports it) and for a cancelled caller (which then sends nothing).
    private func reserveSendCapacity(_ bytes: Int) async {
        let limit = self.options.sendBufferLimit
        let admitted = self.state.withLock { state -> Bool in
            guard case .open = state.phase, state.queuedBytes >= limit else {
                state.queuedBytes += bytes
                return true
            }
            return false
        }
        if admitted { return }
        await withTaskCancellationHandler {
            while true {
                let admitted = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                    let outcome = self.state.withLock { state -> Bool? in
                        guard case .open = state.phase, state.queuedBytes >= limit, !Task.isCancelled else {
                            state.queuedBytes += bytes
                            return true
                        }
                        state.sendWaiters.append(continuation)
                        return nil
                    }
                    if let outcome { continuation.resume(returning: outcome) }
                }
                if admitted { return }
            }
        } onCancel: {
            self.wakeSenders()
        }
    }

    /// Wakes every suspended sender to try its reservation again.
    private func wakeSenders() {
        let waiters = self.state.withLock { state in
            defer { state.sendWaiters = [] }
            return state.sendWaiters
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }

    /// `written` queued bytes reached the socket: wake suspended callers once the queue is below the limit.
    private func wrote(_ written: Int) {
        guard written > 0 else { return }
        let limit = self.options.sendBufferLimit
        let waiters: [CheckedContinuation<Bool, Never>] = self.state.withLock { state in
            state.queuedBytes = max(0, state.queuedBytes - written)
            guard state.queuedBytes < limit, !state.sendWaiters.isEmpty else { return [] }
            defer { state.sendWaiters = [] }
            return state.sendWaiters
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }

    private func deadline() -> UInt64 {
        self.options.commandTimeout == 0 ? 0 : monotonicNanoseconds() &+ self.options.commandTimeout
    }

    private func enqueue(_ bytes: [UInt8], _ pending: Pending?, reserved: Int) -> RESPError? {
        self.enqueue(pending, reserved: reserved) { $0.append(contentsOf: bytes) }
    }

    private func enqueue(_ commands: [RESPCommand], _ pending: Pending?, reserved: Int) -> RESPError? {
        self.enqueue(pending, reserved: reserved) { outbound in
            for command in commands { outbound.append(contentsOf: command.encoded) }
        }
    }

    /// Appends to the outbound buffer (via `write`) and the reply queue in one critical section, so bytes and
    /// waiters stay in the same order, and asks the loop to flush unless a flush is already scheduled.
    /// `reserved`: bytes already counted in `queuedBytes` by ``reserveSendCapacity(_:)`` (returned on failure).
    private func enqueue(_ pending: Pending?, reserved: Int, _ write: (inout [UInt8]) -> Void) -> RESPError? {
        let outcome: (error: RESPError?, schedule: Bool) = self.state.withLock { state in
            switch state.phase {
            case .closed(let error):
                state.queuedBytes = max(0, state.queuedBytes - reserved)
                return (Self.closedError(error, endpoint: self.endpoint), false)
            case .connecting:
                state.queuedBytes = max(0, state.queuedBytes - reserved)
                return (
                    .connectionClosed(endpoint: self.endpoint, reason: "not connected yet", commandsInFlight: 0), false
                )
            case .open:
                break
            }
            let before = state.outbound.count
            write(&state.outbound)
            state.queuedBytes += state.outbound.count - before - reserved
            if let pending { state.pending.append(pending) }
            if state.flushScheduled { return (nil, false) }
            state.flushScheduled = true
            return (nil, true)
        }
        if outcome.schedule { self.loop.execute { runner in self.flush(runner: runner) } }
        return outcome.error
    }

    private static func closedError(_ error: RESPError, endpoint: String) -> RESPError {
        if case .connectionClosed(let e, let reason, _) = error {
            return .connectionClosed(endpoint: e, reason: reason, commandsInFlight: 0)
        }
        return .connectionClosed(endpoint: endpoint, reason: error.description, commandsInFlight: 0)
    }

    // MARK: - Loop thread

    func readable(runner: LoopRunner) {
        guard self.openOrConnect(runner: runner) else { return }
        self.readAvailable(runner: runner)
        if self.io.withLock({ $0.writeNeedsReadable }) { self.writeUnwritten(runner: runner) }
    }

    func writable(runner: LoopRunner) {
        guard self.openOrConnect(runner: runner) else { return }
        if self.io.withLock({ $0.readNeedsWritable }) { self.readAvailable(runner: runner) }
        self.writeUnwritten(runner: runner)
    }

    func closeForShutdown(runner: LoopRunner) {
        self.fail(
            .connectionClosed(endpoint: self.endpoint, reason: "event loop shut down", commandsInFlight: 0),
            runner: runner)
    }

    func tick(now: ContinuousClock.Instant, runner: LoopRunner) {
        let nanoseconds = monotonicNanoseconds()
        // A reply that arrived while this thread was held off the CPU (a loaded host) is read before its deadline
        // is judged: only a reply still missing times out.
        if self.oldestDeadlinePassed(now: nanoseconds) { self.readAvailable(runner: runner) }
        self.checkDeadlines(now: nanoseconds, runner: runner)
    }

    /// True when the connection is open and its oldest command in flight has a deadline at or before `now`.
    private func oldestDeadlinePassed(now: UInt64) -> Bool {
        self.state.withLock { state in
            guard case .open = state.phase, state.head < state.pending.count else { return false }
            let deadline = state.pending[state.head].deadline
            return deadline != 0 && deadline <= now
        }
    }

    /// True when the connection is open; a connecting one completes (or fails) its connect here first.
    private func openOrConnect(runner: LoopRunner) -> Bool {
        let (connecting, closed): (CheckedContinuation<Result<RESPConnection, RESPError>, Never>?, Bool) = self.state
            .withLock { state in
                switch state.phase {
                case .connecting(let continuation, _): return (continuation, false)
                case .open: return (nil, false)
                case .closed: return (nil, true)
                }
            }
        if closed { return false }
        guard let connecting else { return true }
        let code = SocketCalls.pendingError(self.stream.fileDescriptor)
        var failure: RESPError?
        let id = self.io.withLock { $0.registration }
        if code != 0 {
            failure = .io(operation: "connect", endpoint: self.endpoint, errno: code)
        } else {
            let e = runner.modify(fd: self.stream.fileDescriptor, id: id, events: Readiness.readable)
            if e != 0 { failure = .io(operation: "epoll_ctl(MOD)", endpoint: self.endpoint, errno: e) }
        }
        if let failure {
            self.state.withLock { $0.phase = .closed(failure) }
            runner.unregister(fd: self.stream.fileDescriptor, id: id)
            self.stream.close()
            connecting.resume(returning: .failure(failure))
            return false
        }
        self.state.withLock { $0.phase = .open }
        connecting.resume(returning: .success(self))
        return false
    }

    func flush(runner: LoopRunner) {
        // The buffer of the last completed write, empty but keeping its capacity, becomes the callers' next
        // outbound buffer, so each batch is not grown again from an empty array.
        var data: [UInt8] = self.io.withLock { io in
            guard io.unwritten.isEmpty else { return [] }
            var spare: [UInt8] = []
            swap(&spare, &io.unwritten)
            return spare
        }
        self.state.withLock { state in
            state.flushScheduled = false
            swap(&data, &state.outbound)
        }
        if data.isEmpty { return }
        self.io.withLock { io in
            if io.unwritten.isEmpty {
                io.unwritten = data
                io.unwrittenOffset = 0
            } else {
                io.unwritten.append(contentsOf: data)
            }
        }
        self.writeUnwritten(runner: runner)
    }

    private func writeUnwritten(runner: LoopRunner) {
        var written = 0
        let failure: RESPError? = self.io.withLock { io in
            do throws(RESPError) {
                while io.unwrittenOffset < io.unwritten.count {
                    let offset = io.unwrittenOffset
                    let result = try io.unwritten.withUnsafeBytes { raw in
                        Result { () throws(RESPError) in
                            try self.stream.write(UnsafeRawBufferPointer(rebasing: raw[offset...]))
                        }
                    }.get()
                    io.writeNeedsWritable = false
                    io.writeNeedsReadable = false
                    switch result {
                    case .transferred(let n):
                        io.unwrittenOffset += n
                        written += n
                    case .wantWrite, .closed:
                        io.writeNeedsWritable = true
                        try self.updateInterest(&io, runner: runner)
                        return nil
                    case .wantRead:
                        io.writeNeedsReadable = true
                        try self.updateInterest(&io, runner: runner)
                        return nil
                    }
                }
                io.unwritten.removeAll(keepingCapacity: io.unwritten.capacity <= 4 << 20)
                io.unwrittenOffset = 0
                io.writeNeedsWritable = false
                io.writeNeedsReadable = false
                try self.updateInterest(&io, runner: runner)
                return nil
            } catch {
                return error
            }
        }
        self.wrote(written)
        if let failure { self.fail(failure, runner: runner) }
    }

    /// Watches writability exactly while a write or a read waits for it. Loop thread only.
    /// - Throws: `RESPError.io(operation: "epoll_ctl(MOD)", …)` if the loop cannot change the watched events.
    private func updateInterest(_ io: inout IO, runner: LoopRunner) throws(RESPError) {
        let wanted = io.writeNeedsWritable || io.readNeedsWritable
        guard wanted != io.watchingWritable else { return }
        let code = runner.modify(
            fd: self.stream.fileDescriptor, id: io.registration,
            events: wanted ? Readiness.readable | Readiness.writable : Readiness.readable)
        if code != 0 { throw .io(operation: "epoll_ctl(MOD)", endpoint: self.endpoint, errno: code) }
        io.watchingWritable = wanted
    }

    private func readAvailable(runner: LoopRunner) {
        var values: [RESPValue] = []
        let failure: RESPError? = self.io.withLock { io in
            swap(&values, &io.spareValues)
            do throws(RESPError) {
                var total = 0
                readLoop: while total < 4 << 20 {
                    if io.end == io.readBuffer.count {
                        if io.start > 0 {
                            let live = io.end - io.start
                            io.readBuffer.withUnsafeMutableBytes { raw in
                                guard let base = raw.baseAddress else { return }
                                memmove(base, base + io.start, live)
                            }
                            io.start = 0
                            io.end = live
                        } else {
                            // The partial reply fills the buffer: grow it by what arrived (doubling), never to a
                            // length the reply announces, and never past the receive limit.
                            let limit = self.options.receiveBufferLimit
                            guard io.readBuffer.count < limit else {
                                throw .limitExceeded(
                                    what: "receive buffer (one partial reply)", limit: limit,
                                    found: io.readBuffer.count + 1, offset: 0)
                            }
                            var bigger = [UInt8](repeating: 0, count: min(io.readBuffer.count * 2, limit))
                            bigger.withUnsafeMutableBytes { target in
                                io.readBuffer.withUnsafeBytes { source in target.copyMemory(from: source) }
                            }
                            io.readBuffer = bigger
                        }
                    }
                    let end = io.end
                    let result = try io.readBuffer.withUnsafeMutableBytes { raw in
                        Result { () throws(RESPError) in
                            try self.stream.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[end...]))
                        }
                    }.get()
                    if io.readNeedsWritable {
                        io.readNeedsWritable = false
                        try self.updateInterest(&io, runner: runner)
                    }
                    switch result {
                    case .transferred(let n):
                        io.end += n
                        total += n
                        if io.end < io.readBuffer.count { break readLoop }
                    case .wantRead:
                        break readLoop
                    case .wantWrite:
                        io.readNeedsWritable = true
                        try self.updateInterest(&io, runner: runner)
                        break readLoop
                    case .closed:
                        try self.parseAll(&io, into: &values)
                        return .connectionClosed(
                            endpoint: self.endpoint, reason: "server closed the connection", commandsInFlight: 0)
                    }
                }
                try self.parseAll(&io, into: &values)
                return nil
            } catch {
                return error
            }
        }
        if !values.isEmpty { self.deliver(values, runner: runner) }
        if let failure { self.fail(failure, runner: runner) }
        values.removeAll(keepingCapacity: values.capacity <= 4096)
        self.io.withLock { swap(&values, &$0.spareValues) }
    }

    private func parseAll(_ io: inout IO, into values: inout [RESPValue]) throws(RESPError) {
        // A partial reply is parsed again only once the bytes it needs at least are here.
        guard io.end - io.start >= io.needed else { return }
        io.parseAttempts += 1
        let parser = self.parser
        let (start, end) = (io.start, io.end)
        var needed = 0
        let parsed = io.readBuffer.withUnsafeBufferPointer { buffer in
            Result { () throws(RESPError) -> Int in
                var position = start
                while position < end {
                    guard
                        let (value, length) = try parser.parse(
                            UnsafeBufferPointer(rebasing: buffer[position..<end]), minimumLength: &needed)
                    else { break }
                    needed = 0
                    values.append(value)
                    position += length
                }
                return position
            }
        }
        io.start = try parsed.get()
        io.needed = needed
        if io.start == io.end {
            io.start = 0
            io.end = 0
            if io.readBuffer.count > IO.initialCapacity * 16 {
                io.readBuffer = [UInt8](repeating: 0, count: IO.initialCapacity)
            }
        }
    }

    private func deliver(_ values: [RESPValue], runner: LoopRunner) {
        var completed: [Pending] = []
        var pushes: [RESPValue] = []
        var unexpected: RESPValue?
        self.state.withLock { state in
            state.lastActivity = monotonicNanoseconds()
            for value in values {
                if value.isPush {
                    pushes.append(value)
                    continue
                }
                guard state.head < state.pending.count else {
                    unexpected = value
                    break
                }
                if Self.record(value, in: &state.pending[state.head]) {
                    var done = Pending(waiter: nil, name: "", commands: nil, deadline: 0)
                    swap(&done, &state.pending[state.head])
                    completed.append(done)
                    state.head += 1
                }
            }
            if state.head == state.pending.count {
                state.pending.removeAll(keepingCapacity: state.pending.capacity <= 4096)
                state.head = 0
            } else if state.head > 1024, state.head * 2 > state.pending.count {
                state.pending.removeFirst(state.head)
                state.head = 0
            }
        }
        // Pushes first: a push that arrived before a reply is seen before that reply's caller resumes.
        if let handler = self.options.pushHandler {
            for push in pushes { handler(push) }
        }
        for entry in completed { Self.resume(entry.waiter, with: entry.results) }
        if let unexpected {
            self.fail(
                .unexpectedReply(command: "(none in flight)", expected: "no reply", found: unexpected.summary),
                runner: runner)
        }
    }

    /// Adds the reply `value` to `entry` (in place: no copies on this hot path); true when it is complete.
    private static func record(_ value: RESPValue, in entry: inout Pending) -> Bool {
        if value.isErrorReply, let (code, message) = value.errorParts {
            let name = entry.commands?[entry.results.count].name ?? entry.name
            entry.results.append(.failure(.server(code: code, message: message, command: name)))
        } else {
            entry.results.append(.success(value))
        }
        return entry.results.count == entry.expected
    }

    private static func resume(_ waiter: Waiter?, with results: [Result<RESPValue, RESPError>]) {
        switch waiter {
        case .single(let continuation): continuation.resume(returning: results.first ?? .failure(.clientClosed))
        case .batch(let continuation): continuation.resume(returning: results)
        case .keepAlive, nil: break
        }
    }

    private func checkDeadlines(now: UInt64, runner: LoopRunner) {
        var expired: [(Waiter, Int)] = []
        var connectTimedOut: CheckedContinuation<Result<RESPConnection, RESPError>, Never>?
        var keepAliveLost = false
        var ping = false
        self.state.withLock { state in
            switch state.phase {
            case .connecting(let continuation, let deadline):
                if now >= deadline {
                    connectTimedOut = continuation
                    state.phase = .closed(
                        .timeout(
                            operation: "connect", endpoint: self.endpoint,
                            milliseconds: Int(self.options.connectTimeout / 1_000_000)))
                }
                return
            case .closed:
                return
            case .open:
                break
            }
            var i = state.head
            while i < state.pending.count, state.pending[i].deadline != 0, state.pending[i].deadline <= now {
                if let waiter = state.pending[i].waiter {
                    if case .keepAlive = waiter { keepAliveLost = true }
                    expired.append((waiter, state.pending[i].expected))
                    state.pending[i].waiter = nil
                }
                i += 1
            }
            let interval = self.options.keepAliveInterval
            if interval != 0, state.head == state.pending.count, now &- state.lastActivity > interval {
                state.lastActivity = now
                let bytes = RESPCommand("PING").encoded
                state.outbound.append(contentsOf: bytes)
                state.queuedBytes += bytes.count
                // A keep-alive PING may take as long as any command (or 10 s when commands wait forever) and never
                // less than the interval: it is there to find a dead peer, not a busy one.
                let allowed = self.options.commandTimeout != 0 ? self.options.commandTimeout : 10_000_000_000
                state.pending.append(
                    Pending(waiter: .keepAlive, name: "PING", commands: nil, deadline: now &+ max(interval, allowed)))
                ping = true
            }
        }
        if let connectTimedOut {
            runner.unregister(fd: self.stream.fileDescriptor, id: self.io.withLock { $0.registration })
            self.stream.close()
            connectTimedOut.resume(
                returning: .failure(
                    .timeout(
                        operation: "connect", endpoint: self.endpoint,
                        milliseconds: Int(self.options.connectTimeout / 1_000_000))))
            return
        }
        let timeout = RESPError.timeout(
            operation: "command", endpoint: self.endpoint, milliseconds: Int(self.options.commandTimeout / 1_000_000))
        for (waiter, count) in expired {
            Self.resume(waiter, with: Array(repeating: .failure(timeout), count: count))
        }
        if keepAliveLost {
            self.fail(
                .connectionClosed(endpoint: self.endpoint, reason: "keep-alive PING unanswered", commandsInFlight: 0),
                runner: runner)
        } else if ping {
            self.flush(runner: runner)
        }
    }

    /// Closes the socket and fails everything queued or in flight. Loop thread only; idempotent.
    private func fail(_ error: RESPError, runner: LoopRunner) {
        let closing: (failed: [Pending], senders: [CheckedContinuation<Bool, Never>])? = self.state.withLock { state in
            if case .closed = state.phase { return nil }
            state.phase = .closed(error)
            let failed = Array(state.pending[state.head...])
            state.pending = []
            state.head = 0
            state.outbound = []
            state.queuedBytes = 0
            defer { state.sendWaiters = [] }
            return (failed, state.sendWaiters)
        }
        guard let (failed, senders) = closing else { return }
        for sender in senders { sender.resume(returning: false) }
        runner.unregister(fd: self.stream.fileDescriptor, id: self.io.withLock { $0.registration })
        self.stream.close()
        let inFlight = failed.reduce(0) { $0 + ($1.waiter == nil ? 0 : $1.expected) }
        let reason: String
        if case .connectionClosed(_, let r, _) = error { reason = r } else { reason = error.description }
        let closed = RESPError.connectionClosed(endpoint: self.endpoint, reason: reason, commandsInFlight: inFlight)
        for entry in failed {
            Self.resume(entry.waiter, with: Array(repeating: .failure(closed), count: entry.expected))
        }
        self.options.closeHandler?(closed)
    }
}
