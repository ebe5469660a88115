internal import Glibc
internal import Synchronization

/// How a child's stdin and stdout are used.
enum ChildMode: Sendable, Equatable {
    /// One batch: the request is written and stdin closed; the answer is all of stdout once the child exited.
    case oneShot
    /// Many batches, framed (``PersistentFraming``); the child stays up between them.
    case persistent
}

/// What one job on a child came to.
enum ChildOutcome: Sendable {
    /// One-shot: all of stdout after a zero exit. Persistent: the payload of an OK answer.
    case output(ArraySlice<UInt8>, stderrTail: String)
    /// Persistent: the child answered with an error status and this text.
    case remoteError(String)
    case failure(ProcessorError)
    /// Persistent: the child had ended (or was ending) before it took the job; nothing was sent.
    case childGone
}

/// One job handed to a child: the bytes for its stdin, and where the outcome goes.
struct ChildJob: Sendable {
    let request: [ArraySlice<UInt8>]
    let continuation: CheckedContinuation<ChildOutcome, Never>
}

/// How to start a child.
struct ChildCommand: Sendable {
    /// Run as `/bin/sh -c command`.
    let command: String
    /// Variables added to (or replacing those of) the node's environment.
    let environment: [(name: String, value: String)]
    let mode: ChildMode
    /// Most bytes accepted on stdout for one job (a persistent answer's payload).
    let maxOutputBytes: Int
}

/// One child process (`/bin/sh -c COMMAND`) and the thread that drives it.
///
/// The child is started with `posix_spawn` in its own process group, its stdin/stdout/stderr are pipes, every
/// other descriptor is closed in the child (`posix_spawn_file_actions_addclosefrom_np`, race-free),
/// its signal mask is empty and every signal has its default action. A thread of its own (never Swift's
/// cooperative pool) spawns it, writes the request with `writev` straight from the request slices, drains stdout
/// and stderr at the same time (a child that writes before it has read all its input cannot deadlock), keeps only
/// the last ``stderrTailBytes`` of stderr, and reaps it. A waiting task is resumed through its continuation.
///
/// Killing (``kill()``: cancellation, shutdown) sends SIGKILL to the whole group. When the child exits, whatever it
/// left running in its group is killed too, before it is reaped: the child stays a zombie (`waitid(WNOWAIT)`) until
/// then, so its pid, which is also the group id, cannot be reused while it is signalled. The thread ends once the
/// child is reaped and its pipes are drained (at most ``drainGrace`` after its exit, for descriptors that something
/// outside the group holds open), so no zombie and no descriptor outlives an attempt.
final class ChildProcess: Sendable {
    /// How much of stderr is kept for `last_error`.
    static let stderrTailBytes = 4096
    /// How long after the child's exit the pipes are still read (then given up).
    static let drainGrace: Duration = .seconds(2)
    /// How long a persistent child that closed stdout may take to exit before it is killed.
    static let closedStdoutGrace: Duration = .seconds(1)
    /// How often, while the child runs, its exit is checked even without an event on its pipes (a grandchild may
    /// hold them open after the child is gone).
    static let exitCheckMilliseconds: Int32 = 200

    let command: ChildCommand
    private let state = Mutex(State())
    /// The pipe that wakes the driver thread (for a new job or a kill): read end, write end.
    private let wake: (read: Int32, write: Int32)

    private struct State {
        /// Set once spawned; the child is reaped only by the driver thread, under this lock, so a pid here that
        /// is not `reaped` is still ours to signal.
        var pid: pid_t?
        var reaped = false
        /// `kill()` was called: the current job ends `.cancelled`.
        var killed = false
        /// The driver found the protocol broken (persistent); not reusable.
        var broken = false
        var queued: ChildJob?
        /// The driver thread ended; the wake pipe is closed.
        var ended = false
        var endWaiters: [CheckedContinuation<Void, Never>] = []
        /// Why the child could not be started, for jobs submitted after the driver ended.
        var spawnFailure: ProcessorError?
    }

    private init(command: ChildCommand, wake: (read: Int32, write: Int32)) {
        self.command = command
        self.wake = wake
    }

    /// Starts the driver thread, which spawns the child and runs `job` (if any) on it.
    ///
    /// - Throws: ``ProcessorError/spawnFailed(_:)`` when no pipe or thread can be made.
    static func launch(_ command: ChildCommand, job: ChildJob?) throws(ProcessorError) -> ChildProcess {
        let wake = try ProcessPipes.make(nonBlocking: true)
        let child = ChildProcess(command: command, wake: (wake.read, wake.write))
        if let job { child.state.withLock { $0.queued = job } }
        let started = ProcessThread.start { ChildDriver(child: child).run() }
        guard started else {
            _ = close(wake.read)
            _ = close(wake.write)
            throw .spawnFailed("cannot create a thread for the child: \(SystemError.message(errno))")
        }
        return child
    }

    /// True while the child may take a job: spawned, running, not killed, protocol intact.
    var isUsable: Bool {
        self.state.withLock { !$0.reaped && !$0.killed && !$0.broken && !$0.ended && $0.queued == nil }
    }

    /// The pid once spawned (tests look for it in /proc).
    var pid: pid_t? { self.state.withLock { $0.pid } }

    /// Hands a job to a persistent child. If the driver has ended, the job is answered at once (`childGone`, or
    /// `cancelled` if the child was killed).
    func submit(_ job: ChildJob) {
        let immediate: ChildOutcome? = self.state.withLock { state in
            if state.ended || state.reaped || state.broken {
                if state.killed { return .failure(.cancelled) }
                return state.spawnFailure.map { .failure($0) } ?? .childGone
            }
            if state.killed { return .failure(.cancelled) }
            precondition(state.queued == nil, "one job at a time per child")
            state.queued = job
            self.signalWake(state)
            return nil
        }
        if let immediate { job.continuation.resume(returning: immediate) }
    }

    /// Kills the child's whole process group with SIGKILL (now, or as soon as it is spawned); the current job
    /// ends ``ProcessorError/cancelled``. Safe from any thread, at any time, any number of times.
    func kill() {
        self.state.withLock { state in
            state.killed = true
            if let pid = state.pid, !state.reaped { _ = Glibc.kill(-pid, SIGKILL) }
            self.signalWake(state)
        }
    }

    /// Waits until the child is reaped and the driver thread has closed every descriptor.
    func waitEnded() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = self.state.withLock { state in
                if state.ended { return true }
                state.endWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func signalWake(_ state: State) {
        guard !state.ended else { return }
        var byte: UInt8 = 1
        // Non-blocking: a full pipe already holds a wake-up.
        _ = Glibc.write(self.wake.write, &byte, 1)
    }

    // MARK: Driver-thread side

    var wakeReadFD: Int32 { self.wake.read }

    /// Records the spawned pid; kills it at once if `kill()` came first. Returns false if it was killed.
    func spawned(_ pid: pid_t) -> Bool {
        self.state.withLock { state in
            state.pid = pid
            if state.killed { _ = Glibc.kill(-pid, SIGKILL) }
            return !state.killed
        }
    }

    /// Takes the queued job, if any.
    func takeJob() -> ChildJob? {
        self.state.withLock { state in
            defer { state.queued = nil }
            return state.queued
        }
    }

    var wasKilled: Bool { self.state.withLock { $0.killed } }

    /// Kills the group because the child broke the protocol (persistent); the current job fails with the
    /// driver's reason, not `cancelled`.
    func killBroken() {
        self.state.withLock { state in
            state.broken = true
            if let pid = state.pid, !state.reaped { _ = Glibc.kill(-pid, SIGKILL) }
        }
    }

    /// Kills what is left of the exited child's group, then reaps it. Returns the raw wait status, or nil if the
    /// status is gone (someone else reaped it, e.g. with SIGCHLD ignored).
    func reap(_ pid: pid_t) -> Int32? {
        self.state.withLock { state in
            _ = Glibc.kill(-pid, SIGKILL)
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &status, 0) } while result < 0 && errno == EINTR
            state.reaped = true
            return result == pid ? status : nil
        }
    }

    /// Marks the driver ended, answers a job queued meanwhile (`cancelled` after a kill, else `failure` if given,
    /// else `childGone`), closes the wake pipe, resumes `waitEnded()`.
    func finish(answeringLateJobsWith failure: ProcessorError?) {
        typealias Ending = (queued: ChildJob?, waiters: [CheckedContinuation<Void, Never>], killed: Bool)
        let (queued, waiters, killed): Ending = self.state.withLock { state in
            state.ended = true
            state.spawnFailure = failure
            _ = close(self.wake.read)
            _ = close(self.wake.write)
            defer {
                state.queued = nil
                state.endWaiters = []
            }
            return (state.queued, state.endWaiters, state.killed)
        }
        let late: ChildOutcome = killed ? .failure(.cancelled) : failure.map { .failure($0) } ?? .childGone
        queued?.continuation.resume(returning: late)
        for waiter in waiters { waiter.resume() }
    }
}

/// Raw wait statuses (the `<sys/wait.h>` macros, which Swift does not import).
enum WaitStatus {
    /// The exit code if the child exited, else nil.
    static func exitCode(_ status: Int32) -> Int32? {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : nil
    }

    /// The signal that killed the child, else nil.
    static func signal(_ status: Int32) -> Int32? {
        let signal = status & 0x7F
        return signal != 0 && signal != 0x7F ? signal : nil
    }
}

/// Threads of our own for blocking work.
enum ProcessThread {
    /// Starts a detached thread running `body`; false if the system refused.
    static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                guard let context else { return nil }
                Unmanaged<ThreadBody>.fromOpaque(context).takeRetainedValue().body()
                return nil
            }, box)
        guard result == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            errno = result
            return false
        }
        pthread_detach(thread)
        return true
    }

    private final class ThreadBody: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}

/// Pipes with `FD_CLOEXEC` set before any child of ours can be spawned (Swift's Glibc has no `pipe2`).
enum ProcessPipes {
    /// Serialises making descriptors and spawning children, so no child of ours inherits another's pipe in the
    /// moment between `pipe()` and `fcntl(FD_CLOEXEC)`.
    static let spawnLock = Mutex(())

    /// - Throws: ``ProcessorError/spawnFailed(_:)`` (EMFILE, ENFILE).
    static func make(nonBlocking: Bool) throws(ProcessorError) -> (read: Int32, write: Int32) {
        try self.spawnLock.withLock { _ throws(ProcessorError) in try self.makeLocked(nonBlocking: nonBlocking) }
    }

    /// As ``make(nonBlocking:)``; the caller holds ``spawnLock``.
    static func makeLocked(nonBlocking: Bool) throws(ProcessorError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .spawnFailed("cannot create a pipe: \(SystemError.message(errno))") }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            if nonBlocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        }
        return (fds[0], fds[1])
    }

    static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }
}
