internal import Glibc

/// What one of a child's standard streams is connected to.
public enum ChildStream: Sendable, Equatable {
    /// A pipe of ours: stdin is fed by ``SpawnedProcess/write(_:)``, stdout and stderr are collected.
    case pipe
    /// `/dev/null`.
    case discard
    /// The test process's own descriptor. Avoid it for anything that may outlive the test: a child holding the
    /// test runner's output pipe keeps `swift test` waiting.
    case inherit
    /// stderr only: the same pipe or file as stdout (`2>&1`).
    case stdout
}

/// How to start a child process.
public struct ChildCommand: Sendable {
    /// A path, or a name looked up in `PATH` (when it has no `/`).
    public var executable: String
    /// The arguments after `argv[0]` (which is `executable`).
    public var arguments: [String]
    /// Variables added to, or replacing those of, the inherited environment (or the whole environment).
    public var environment: [String: String]
    /// False: the child gets only ``environment``.
    public var inheritEnvironment: Bool
    /// The child's working directory (nil: ours).
    public var directory: String?
    public var stdin: ChildStream
    public var stdout: ChildStream
    public var stderr: ChildStream

    public init(
        _ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
        inheritEnvironment: Bool = true, directory: String? = nil,
        stdin: ChildStream = .pipe, stdout: ChildStream = .pipe, stderr: ChildStream = .pipe
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.inheritEnvironment = inheritEnvironment
        self.directory = directory
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }

    /// The command line, for messages.
    public var commandLine: String { ([self.executable] + self.arguments).joined(separator: " ") }
}

/// Why a child could not be started or waited for.
public enum ChildProcessError: Error, CustomStringConvertible, Equatable {
    case spawnFailed(command: String, errno: Int32)
    case pipeFailed(errno: Int32)
    case threadFailed(errno: Int32)
    case invalidStream(String)
    case unsupported(String)
    case timedOut(command: String, seconds: Double, output: String)

    public var description: String {
        switch self {
        case let .spawnFailed(command, code): "cannot start \(command): \(String(cString: strerror(code)))"
        case let .pipeFailed(code): "cannot create a pipe for a child: \(String(cString: strerror(code)))"
        case let .threadFailed(code): "cannot create a thread for a child: \(String(cString: strerror(code)))"
        case let .invalidStream(message): message
        case let .unsupported(message): message
        case let .timedOut(command, seconds, output):
            "\(command) did not finish within \(seconds) s (killed); output so far: \(output.suffix(2000))"
        }
    }
}

/// What a finished child came to.
public struct ChildResult: Sendable {
    /// The exit code, or nil if a signal killed it.
    public var exitCode: Int32?
    /// The signal that killed it, if one did.
    public var signal: Int32?
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    /// The exit code, or 128 + the signal (as a shell reports it).
    public var status: Int32 { self.exitCode ?? (128 + (self.signal ?? 0)) }
    public var stdoutText: String { String(decoding: self.stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: self.stderr, as: UTF8.self) }
}

/// One child process started with `posix_spawn`, for tests (no Foundation `Process`).
///
/// The child runs in a process group of its own, with an empty signal mask and default signal actions; it gets
/// descriptors 0–2 as configured and nothing else (`posix_spawn_file_actions_addclosefrom_np(3)`: no descriptor
/// of the test process leaks into it, whether or not it is close-on-exec; our pipes are made `O_CLOEXEC`).
///
/// Two threads of its own (never the cooperative pool) serve it: one blocks in `waitid` until the child exits,
/// then kills whatever it left in its process group and reaps it (the pid, which is also the group id, cannot be
/// reused before that, so the group is never signalled by mistake); the other polls the pipes, feeds stdin and
/// collects stdout and stderr, so a chatty child never blocks on a full pipe. It stops reading at most
/// ``drainGrace`` after the exit, for pipes a process outside the group holds open.
///
/// Waiting is offered twice: `async` (the task is suspended on a continuation, no thread is held) and blocking
/// (a condition variable, for synchronous callers). Every wait has a deadline. ``kill()`` and the scope
/// ``withChildProcess(_:_:)`` kill the whole group and reap it.
public final class SpawnedProcess: Sendable {
    /// How long the pipes are still read after the child exited.
    public static let drainGrace: Duration = .seconds(2)

    public let command: ChildCommand
    /// The child's pid, which is also its process group id.
    public let pid: Int32
    private let monitor: Monitor<State>
    /// The wake pipe of the I/O thread: read end, write end (closed by that thread, under the lock).
    private let wake: (read: Int32, write: Int32)

    struct State {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        /// Where ``nextLine`` continues in `stdout`.
        var lineOffset = 0
        var stdoutOpen: Bool
        var stderrOpen: Bool
        /// Bytes for stdin not yet written, and whether stdin is to be closed once they are.
        var input: [UInt8] = []
        var inputOffset = 0
        var closeInput = false
        var stdinOpen: Bool
        /// The raw wait status once reaped (nil inside: lost, e.g. SIGCHLD ignored).
        var reaped: Int32?? = nil
        /// The I/O thread ended: every pipe is closed.
        var ioEnded = false
        /// Counts events (output, end of file, exit); async waiters wait for it to change.
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0

        var finished: Bool { self.reaped != nil && self.ioEnded }
    }

    private init(command: ChildCommand, pid: Int32, wake: (Int32, Int32), state: State) {
        self.command = command
        self.pid = pid
        self.wake = wake
        self.monitor = Monitor(state)
    }

    // MARK: Starting

    /// Starts `command`.
    ///
    /// - Throws: ``ChildProcessError/spawnFailed(command:errno:)`` (no such file, not executable, …),
    ///   ``ChildProcessError/pipeFailed(errno:)``, ``ChildProcessError/threadFailed(errno:)``.
    public static func spawn(_ command: ChildCommand) throws(ChildProcessError) -> SpawnedProcess {
        if command.stdin == .stdout || command.stdout == .stdout {
            throw .invalidStream("only stderr can be redirected to stdout")
        }
        var opened: [Int32] = []
        func closeOpened() { for fd in opened { _ = close(fd) } }
        func makePipe() throws(ChildProcessError) -> (read: Int32, write: Int32) {
            let pipe = try Spawn.pipe()
            opened += [pipe.read, pipe.write]
            return pipe
        }
        do throws(ChildProcessError) {
            let wake = try makePipe()
            Spawn.setNonBlocking(wake.read)
            Spawn.setNonBlocking(wake.write)
            let stdinPipe = command.stdin == .pipe ? try makePipe() : nil
            let stdoutPipe = command.stdout == .pipe ? try makePipe() : nil
            let stderrPipe = command.stderr == .pipe ? try makePipe() : nil
            let pid = try Spawn.spawn(
                command, stdin: stdinPipe?.read, stdout: stdoutPipe?.write, stderr: stderrPipe?.write)
            // The child's ends are its own now; from here on every descriptor is closed by the path that owns it.
            for fd in [stdinPipe?.read, stdoutPipe?.write, stderrPipe?.write].compactMap({ $0 }) { _ = close(fd) }
            opened = []
            let ours = [stdinPipe?.write, stdoutPipe?.read, stderrPipe?.read].compactMap { $0 }
            for fd in ours { Spawn.setNonBlocking(fd) }
            let state = State(stdoutOpen: stdoutPipe != nil, stderrOpen: stderrPipe != nil, stdinOpen: stdinPipe != nil)
            let child = SpawnedProcess(command: command, pid: pid, wake: wake, state: state)
            let io = IOLoop(child: child, stdin: stdinPipe?.write ?? -1, stdout: stdoutPipe?.read ?? -1,
                            stderr: stderrPipe?.read ?? -1)
            guard HelperThread.start({ child.waitAndReap() }) else {
                let code = errno
                _ = Glibc.kill(-pid, SIGKILL)
                var status: Int32 = 0
                _ = waitpid(pid, &status, 0)
                for fd in ours + [wake.read, wake.write] { _ = close(fd) }
                throw .threadFailed(errno: code)
            }
            guard HelperThread.start({ io.run() }) else {
                let code = errno
                // The reaper thread reaps it; the pipes are closed here, the wake pipe by ioFinished().
                child.sendToGroup(SIGKILL)
                for fd in ours { _ = close(fd) }
                child.ioFinished()
                throw .threadFailed(errno: code)
            }
            return child
        } catch {
            closeOpened()
            throw error
        }
    }

    // MARK: State

    /// True until the child exited (it may be a zombie not yet reaped for a moment after).
    public var isRunning: Bool { self.monitor.withLock { $0.reaped == nil } }

    /// The exit code if the child exited (not killed by a signal); nil while it runs.
    public var exitCode: Int32? {
        self.monitor.withLock { state in
            guard case let .some(.some(status)) = state.reaped else { return nil }
            return WaitStatus.exitCode(status)
        }
    }

    /// The signal that killed the child, if one did.
    public var terminationSignal: Int32? {
        self.monitor.withLock { state in
            guard case let .some(.some(status)) = state.reaped else { return nil }
            return WaitStatus.signal(status)
        }
    }

    /// Everything read from stdout so far.
    public var stdoutBytes: [UInt8] { self.monitor.withLock { $0.stdout } }
    /// Everything read from stderr so far.
    public var stderrBytes: [UInt8] { self.monitor.withLock { $0.stderr } }
    public var stdoutText: String { String(decoding: self.stdoutBytes, as: UTF8.self) }
    public var stderrText: String { String(decoding: self.stderrBytes, as: UTF8.self) }

    /// The result so far (complete once ``waitForExit(within:)`` returned true).
    public var result: ChildResult {
        self.monitor.withLock { state in
            var exitCode: Int32?
            var signal: Int32?
            if case let .some(.some(status)) = state.reaped {
                exitCode = WaitStatus.exitCode(status)
                signal = WaitStatus.signal(status)
            }
            return ChildResult(exitCode: exitCode, signal: signal, stdout: state.stdout, stderr: state.stderr)
        }
    }

    // MARK: stdin

    /// Queues `bytes` for the child's stdin (written by the I/O thread; dropped once the child exited or closed
    /// its stdin).
    public func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        self.monitor.withLock { state in
            guard state.stdinOpen, !state.closeInput else { return }
            state.input += bytes
            self.signalWake(state)
        }
    }

    /// Closes the child's stdin once everything queued was written.
    public func closeInput() {
        self.monitor.withLock { state in
            state.closeInput = true
            self.signalWake(state)
        }
    }

    // MARK: Signals

    /// Sends `signal` to the child alone (not its group), if it was not reaped yet.
    public func send(_ signal: Int32) {
        self.monitor.withLock { state in
            if state.reaped == nil { _ = Glibc.kill(self.pid, signal) }
        }
    }

    /// Sends `signal` to the child's whole process group, if the child was not reaped yet.
    public func sendToGroup(_ signal: Int32) {
        self.monitor.withLock { state in
            if state.reaped == nil { _ = Glibc.kill(-self.pid, signal) }
        }
    }

    /// SIGKILL to the whole group, then waits (suspended, no thread held) until it is reaped and its pipes are
    /// closed. Bounded: SIGKILL cannot be caught, and the pipes are given up ``drainGrace`` after the exit.
    public func kill() async {
        self.sendToGroup(SIGKILL)
        _ = await self.waitForExit(within: .seconds(30))
    }

    /// ``kill()`` for synchronous callers (`defer`): blocks the calling thread until the child is reaped (the
    /// reaping happens on this child's own thread, so this never waits for the cooperative pool).
    public func killBlocking() {
        self.sendToGroup(SIGKILL)
        _ = self.waitForExitBlocking(timeout: .seconds(30))
    }

    // MARK: Waiting

    /// Waits until the child exited and its output is complete; false if that did not happen within `limit`.
    public func waitForExit(within limit: Duration) async -> Bool {
        await self.wait(within: limit) { $0.finished ? true : nil } ?? false
    }

    /// ``waitForExit(within:)`` blocking the calling thread.
    public func waitForExitBlocking(timeout limit: Duration) -> Bool {
        self.monitor.blockingWait(until: .now + limit) { $0.finished ? true : nil } ?? false
    }

    /// The next whole line of stdout (without the newline); nil if none came within `limit` or stdout ended
    /// first (a last line without a newline is not returned; it stays in ``stdoutBytes``).
    public func nextLine(within limit: Duration) async -> String? {
        await self.wait(within: limit) { Self.takeLine(&$0) } ?? nil
    }

    /// ``nextLine(within:)`` blocking the calling thread.
    public func nextLineBlocking(timeout limit: Duration) -> String? {
        self.monitor.blockingWait(until: .now + limit) { Self.takeLine(&$0) } ?? nil
    }

    /// Waits until stdout (or stderr) contains `text`; false if it did not within `limit` or the stream ended.
    public func waitForOutput(containing text: String, onStderr: Bool = false, within limit: Duration) async -> Bool {
        let needle = Array(text.utf8)
        return await self.wait(within: limit) { state in Self.contains(&state, needle, onStderr) } ?? false
    }

    /// ``waitForOutput(containing:onStderr:within:)`` blocking the calling thread.
    public func waitForOutputBlocking(containing text: String, onStderr: Bool = false, timeout limit: Duration) -> Bool {
        let needle = Array(text.utf8)
        return self.monitor.blockingWait(until: .now + limit) { state in Self.contains(&state, needle, onStderr) }
            ?? false
    }

    /// nil: not yet; .some(nil): stdout ended without another line.
    private static func takeLine(_ state: inout State) -> String?? {
        let rest = state.stdout[state.lineOffset...]
        if let newline = rest.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: state.stdout[state.lineOffset..<newline], as: UTF8.self)
            state.lineOffset = newline + 1
            return .some(line)
        }
        return state.stdoutOpen ? nil : .some(nil)
    }

    private static func contains(_ state: inout State, _ needle: [UInt8], _ onStderr: Bool) -> Bool? {
        let haystack = onStderr ? state.stderr : state.stdout
        if needle.isEmpty || haystack.count >= needle.count
            && (0...(haystack.count - needle.count)).contains(where: { haystack[$0..<($0 + needle.count)].elementsEqual(needle) })
        {
            return true
        }
        return (onStderr ? state.stderrOpen : state.stdoutOpen) ? nil : false
    }

    /// Suspends until `check` answers (re-checked after every event) or `limit` passed; then `check`'s answer.
    private func wait<R: Sendable>(within limit: Duration, _ check: (inout State) -> R?) async -> R? {
        let deadline = ContinuousClock.now + limit
        while true {
            let (answer, generation) = self.monitor.withLock { state in (check(&state), state.generation) }
            if let answer { return answer }
            if ContinuousClock.now >= deadline || Task.isCancelled { return nil }
            await self.nextEvent(after: generation, deadline: deadline)
        }
    }

    /// Returns once an event after `generation` happened, at `deadline`, or on cancellation.
    private func nextEvent(after generation: UInt64, deadline: ContinuousClock.Instant) async {
        let id = self.monitor.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timer = Task { [self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            self.resumeWaiter(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = self.monitor.withLock { state in
                    if state.generation != generation || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            self.resumeWaiter(id)
        }
        timer.cancel()
    }

    private func resumeWaiter(_ id: UInt64) {
        let waiter = self.monitor.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.resume()
    }

    /// Records an event: wakes every waiter, async or blocked.
    fileprivate func changed(_ update: (inout State) -> Void) {
        let waiters = self.monitor.withLock { state in
            update(&state)
            state.generation &+= 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        self.monitor.broadcast()
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Helper-thread side

    /// Wakes the I/O thread; called under the lock, which keeps the wake pipe open meanwhile.
    private func signalWake(_ state: borrowing State) {
        guard !state.ioEnded else { return }
        var byte: UInt8 = 1
        // Non-blocking: a full pipe already holds a wake-up.
        _ = Glibc.write(self.wake.write, &byte, 1)
    }

    /// The reaper thread: waits for the exit without reaping, kills what is left of the group, reaps.
    fileprivate func waitAndReap() {
        var info = siginfo_t()
        var result: Int32
        repeat {
            result = waitid(P_PID, id_t(self.pid), &info, WEXITED | WNOWAIT)
        } while result < 0 && errno == EINTR
        self.changed { state in
            _ = Glibc.kill(-self.pid, SIGKILL)
            var status: Int32 = 0
            var reaped: pid_t
            repeat { reaped = waitpid(self.pid, &status, 0) } while reaped < 0 && errno == EINTR
            state.reaped = .some(reaped == self.pid ? status : nil)
            self.signalWake(state)
        }
    }

    fileprivate var wakeRead: Int32 { self.wake.read }

    fileprivate func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        _ = buffer.withUnsafeMutableBytes { Glibc.read(self.wake.read, $0.baseAddress, $0.count) }
    }

    /// What the I/O thread should do about stdin: the bytes to write (from `offset`), whether to close it.
    fileprivate func pendingInput() -> (bytes: ArraySlice<UInt8>, close: Bool, exited: Bool) {
        self.monitor.withLock { state in
            (state.input[state.inputOffset...], state.closeInput, state.reaped != nil)
        }
    }

    fileprivate func wroteInput(_ count: Int) {
        self.monitor.withLock { state in
            state.inputOffset += count
            if state.inputOffset == state.input.count {
                state.input = []
                state.inputOffset = 0
            }
        }
    }

    fileprivate func stdinClosed() {
        self.monitor.withLock { state in
            state.stdinOpen = false
            state.input = []
            state.inputOffset = 0
        }
    }

    fileprivate func received(_ bytes: UnsafeRawBufferPointer, stderr: Bool) {
        self.changed { state in
            // As typed bytes: appended with one copy, not element by element.
            let typed = bytes.assumingMemoryBound(to: UInt8.self)
            if stderr { state.stderr.append(contentsOf: typed) } else { state.stdout.append(contentsOf: typed) }
        }
    }

    fileprivate func ended(stderr: Bool) {
        self.changed { state in
            if stderr { state.stderrOpen = false } else { state.stdoutOpen = false }
        }
    }

    /// When the child was reaped, if it was.
    fileprivate var isReaped: Bool { self.monitor.withLock { $0.reaped != nil } }

    /// The I/O thread ended: closes the wake pipe, wakes every waiter.
    fileprivate func ioFinished() {
        self.changed { state in
            state.ioEnded = true
            state.stdoutOpen = false
            state.stderrOpen = false
            state.stdinOpen = false
            _ = close(self.wake.read)
            _ = close(self.wake.write)
        }
    }
}

/// The I/O thread of one child: poll(2) over the wake pipe, stdin, stdout and stderr.
private final class IOLoop: Sendable {
    let child: SpawnedProcess
    let fds: FDs

    /// `@unchecked Sendable`: created before the thread starts and used only by it afterwards.
    final class FDs: @unchecked Sendable {
        var stdin: Int32
        var stdout: Int32
        var stderr: Int32
        init(stdin: Int32, stdout: Int32, stderr: Int32) {
            (self.stdin, self.stdout, self.stderr) = (stdin, stdout, stderr)
        }
    }

    init(child: SpawnedProcess, stdin: Int32, stdout: Int32, stderr: Int32) {
        self.child = child
        self.fds = FDs(stdin: stdin, stdout: stdout, stderr: stderr)
    }

    func run() {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
        defer {
            scratch.deallocate()
            self.closeStdin()
            for fd in [self.fds.stdout, self.fds.stderr] where fd >= 0 { _ = close(fd) }
            self.child.ioFinished()
        }
        var reapedAt: ContinuousClock.Instant?
        while true {
            let input = self.child.pendingInput()
            if input.exited, reapedAt == nil { reapedAt = .now }
            if self.fds.stdin >= 0, input.exited || (input.bytes.isEmpty && input.close) { self.closeStdin() }
            if self.fds.stdin < 0, self.fds.stdout < 0, self.fds.stderr < 0 { return }
            var timeout: Int32 = -1
            if let reapedAt {
                let left = SpawnedProcess.drainGrace - (ContinuousClock.now - reapedAt)
                if left <= .zero { return }
                timeout = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            }
            var set = [
                pollfd(fd: self.child.wakeRead, events: Int16(POLLIN), revents: 0),
                pollfd(fd: input.bytes.isEmpty ? -1 : self.fds.stdin, events: Int16(POLLOUT), revents: 0),
                pollfd(fd: self.fds.stdout, events: Int16(POLLIN), revents: 0),
                pollfd(fd: self.fds.stderr, events: Int16(POLLIN), revents: 0),
            ]
            let ready = set.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
            if ready < 0 { continue }  // EINTR
            let active = Int16(POLLIN | POLLOUT | POLLHUP | POLLERR)
            if set[0].revents != 0 { self.child.drainWake() }
            if set[1].revents & active != 0 { self.write(input.bytes) }
            if set[2].revents & active != 0 { self.read(&self.fds.stdout, stderr: false, scratch) }
            if set[3].revents & active != 0 { self.read(&self.fds.stderr, stderr: true, scratch) }
        }
    }

    private func write(_ bytes: ArraySlice<UInt8>) {
        let written = bytes.withUnsafeBytes { Glibc.write(self.fds.stdin, $0.baseAddress, $0.count) }
        if written > 0 {
            self.child.wroteInput(written)
        } else if written < 0, errno != EAGAIN, errno != EINTR {
            // EPIPE: the child closed its stdin; what it did not read is dropped.
            self.closeStdin()
        }
    }

    private func read(_ fd: inout Int32, stderr: Bool, _ scratch: UnsafeMutableRawBufferPointer) {
        let count = Glibc.read(fd, scratch.baseAddress, scratch.count)
        if count > 0 {
            self.child.received(UnsafeRawBufferPointer(rebasing: scratch[0..<count]), stderr: stderr)
        } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
            _ = close(fd)
            fd = -1
            self.child.ended(stderr: stderr)
        }
    }

    private func closeStdin() {
        guard self.fds.stdin >= 0 else { return }
        _ = close(self.fds.stdin)
        self.fds.stdin = -1
        self.child.stdinClosed()
    }
}

/// Raw wait statuses (the `<sys/wait.h>` macros, which Swift does not import).
enum WaitStatus {
    static func exitCode(_ status: Int32) -> Int32? {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : nil
    }

    static func signal(_ status: Int32) -> Int32? {
        let signal = status & 0x7F
        return signal != 0 && signal != 0x7F ? signal : nil
    }
}
