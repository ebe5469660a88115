public import ArrowIPC
internal import Glibc
internal import Synchronization

/// `--exec 'COMMAND ARGS'` (the ValkeyFlight contract (CONTRACT.md) §3): each attempt runs `/bin/sh -c COMMAND` with the batch as
/// an Arrow IPC stream on stdin; its stdout, an Arrow IPC stream, is the result. The environment adds
/// `VALKEYFLIGHT_KEY` (`QUEUE/ID`), `VALKEYFLIGHT_QUEUE`, `VALKEYFLIGHT_ID` and `VALKEYFLIGHT_ATTEMPT` (1-based).
/// A non-zero exit, a signal, bad output or cancellation (timeout, shutdown) fails the attempt, with the tail of
/// stderr in the error. The child runs in its own process group, which is killed with SIGKILL on cancellation.
///
/// With `persistent: true` (`--exec-persistent`) a child stays up and answers batch after batch over the framed
/// protocol of ``PersistentFraming``; there is one child per concurrent caller (worker slot), started on demand
/// and restarted after it dies or breaks the protocol.
///
/// SIGPIPE is ignored in the whole process once an ExecProcessor exists (a child that exits without reading its
/// input is a normal failure, not a crash of the node).
public final class ExecProcessor: BatchProcessor {
    /// The shell command, run as `/bin/sh -c command`.
    public let command: String
    /// Most bytes accepted on stdout for one batch.
    public let maxOutputBytes: Int
    /// Whether children stay up between batches (``PersistentFraming``).
    public let persistent: Bool
    /// Limits applied to the child's output stream.
    public let limits: IPCReadLimits

    private struct State {
        var shutDown = false
        /// Every child started and not yet ended (for shutdown).
        var live: [ObjectIdentifier: ChildProcess] = [:]
        /// Persistent children waiting for their next batch.
        var idle: [ChildProcess] = []
    }

    private let state = Mutex(State())

    /// - Parameters:
    ///   - command: run as `/bin/sh -c COMMAND`; environment adds VALKEYFLIGHT_KEY, VALKEYFLIGHT_QUEUE,
    ///     VALKEYFLIGHT_ID, VALKEYFLIGHT_ATTEMPT.
    ///   - maxOutputBytes: bounds stdout (beyond → badOutput, child killed); stderr keeps only its last ~4 KiB.
    ///   - persistent: keep one long-lived child per concurrent caller (``PersistentFraming``).
    ///   - limits: bounds every message of the output stream.
    /// - Throws: ``ProcessorError/spawnFailed(_:)`` for an empty command or a limit below 1.
    public init(command: String, maxOutputBytes: Int = 1 << 31, persistent: Bool = false,
                limits: IPCReadLimits = .default) throws {
        guard command.contains(where: { !$0.isWhitespace }) else {
            throw ProcessorError.spawnFailed("the command is empty")
        }
        guard maxOutputBytes > 0 else {
            throw ProcessorError.spawnFailed("maxOutputBytes must be at least 1, got \(maxOutputBytes)")
        }
        self.command = command
        self.maxOutputBytes = maxOutputBytes
        self.persistent = persistent
        self.limits = limits
        signal(SIGPIPE, SIG_IGN)
    }

    deinit {
        // No caller can be waiting (each holds a reference); children still up are persistent idle ones.
        for child in self.state.withLock({ Array($0.live.values) }) { child.kill() }
    }

    /// Runs one attempt in a child (a new one, or an idle persistent one).
    ///
    /// - Throws: ``ProcessorError``: `.exited`/`.killed` with the stderr tail, `.badOutput` (not a valid IPC stream,
    ///   more than `maxOutputBytes`, broken framing), `.failed` (a persistent child's error answer), `.cancelled`
    ///   (the task was cancelled or ``shutdown()`` called; the child was killed and reaped before this returns),
    ///   `.spawnFailed`.
    public func process(_ input: ProcessorInput) async throws -> ProcessorOutput {
        if Task.isCancelled { throw ProcessorError.cancelled }
        if self.persistent { return try await self.processPersistent(input) }
        let child = try self.launch(environment: Self.batchEnvironment(input), mode: .oneShot, job: nil)
        let outcome = await self.run(child, request: input.streamSegments)
        return try self.output(of: outcome)
    }

    /// Kills every child still running (persistent ones too) and waits until each is reaped; attempts in flight
    /// end ``ProcessorError/cancelled``, and later ones fail the same way at once.
    public func shutdown() async {
        let children = self.state.withLock { state in
            state.shutDown = true
            state.idle = []
            return Array(state.live.values)
        }
        for child in children { child.kill() }
        for child in children {
            await child.waitEnded()
            _ = self.state.withLock { $0.live.removeValue(forKey: ObjectIdentifier(child)) }
        }
    }

    // MARK: Running

    private static func batchEnvironment(_ input: ProcessorInput) -> [(name: String, value: String)] {
        [("VALKEYFLIGHT_KEY", input.key.description), ("VALKEYFLIGHT_QUEUE", input.key.queue),
         ("VALKEYFLIGHT_ID", input.key.id), ("VALKEYFLIGHT_ATTEMPT", String(input.attempt))]
    }

    /// Starts a child (registered for shutdown) whose thread waits for its first job.
    private func launch(environment: [(name: String, value: String)], mode: ChildMode, job: ChildJob?)
        throws(ProcessorError) -> ChildProcess
    {
        let command = ChildCommand(command: self.command, environment: environment, mode: mode,
                                   maxOutputBytes: self.maxOutputBytes)
        let child = try ChildProcess.launch(command, job: job)
        let shutDown = self.state.withLock { state in
            if !state.shutDown { state.live[ObjectIdentifier(child)] = child }
            return state.shutDown
        }
        if shutDown { child.kill() }
        return child
    }

    /// Hands `request` to `child` and waits for its outcome; cancellation kills the child. A one-shot child is
    /// waited for until reaped.
    private func run(_ child: ChildProcess, request: [ArraySlice<UInt8>]) async -> ChildOutcome {
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ChildOutcome, Never>) in
                child.submit(ChildJob(request: request, continuation: continuation))
            }
        } onCancel: {
            child.kill()
        }
        if child.command.mode == .oneShot || !child.isUsable {
            await self.retire(child)
        }
        return outcome
    }

    /// Forgets a child that will take no more jobs, once it has ended.
    private func retire(_ child: ChildProcess) async {
        child.kill()
        await child.waitEnded()
        _ = self.state.withLock { $0.live.removeValue(forKey: ObjectIdentifier(child)) }
    }

    private func output(of outcome: ChildOutcome) throws(ProcessorError) -> ProcessorOutput {
        switch outcome {
        case let .output(bytes, tail):
            do {
                return try ProcessorOutput.decoding(stream: bytes, limits: self.limits)
            } catch {
                throw error.withStderrTail(tail)
            }
        case let .remoteError(text):
            throw .failed(text.isEmpty ? "(no message)" : text)
        case let .failure(error):
            throw error
        case .childGone:
            throw .badOutput("the processor ended before it took the batch", stderrTail: "")
        }
    }

    // MARK: Persistent

    private func processPersistent(_ input: ProcessorInput) async throws(ProcessorError) -> ProcessorOutput {
        let request = PersistentFraming.request(for: input)
        // An idle child may have died since its last batch; then (and only then: nothing was sent) a new one
        // takes the batch.
        for _ in 0..<3 {
            let child = try self.idleOrNewChild()
            let outcome = await self.run(child, request: request)
            if case .childGone = outcome { continue }
            if case .failure(.spawnFailed) = outcome { return try self.output(of: outcome) }
            if child.isUsable { self.park(child) }
            return try self.output(of: outcome)
        }
        throw .badOutput("the persistent processor ended before it took the batch, three times in a row",
                         stderrTail: "")
    }

    private func idleOrNewChild() throws(ProcessorError) -> ChildProcess {
        while true {
            let next: ChildProcess?? = self.state.withLock { state in
                if state.shutDown { return .some(nil) }
                return state.idle.popLast().map { .some($0) } ?? nil
            }
            switch next {
            case .some(nil): throw .cancelled
            case let .some(child?):
                if child.isUsable { return child }
                child.kill()
                _ = self.state.withLock { $0.live.removeValue(forKey: ObjectIdentifier(child)) }
            case nil:
                return try self.launch(environment: [("VALKEYFLIGHT_PERSISTENT", "1")], mode: .persistent, job: nil)
            }
        }
    }

    private func park(_ child: ChildProcess) {
        let keep = self.state.withLock { state in
            guard !state.shutDown else { return false }
            state.idle.append(child)
            return true
        }
        if !keep { child.kill() }
    }

    /// Pids of the children now running (tests check them in /proc).
    package var childPIDs: [Int32] {
        self.state.withLock { state in state.live.values.compactMap(\.pid) }
    }
}
