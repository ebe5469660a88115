internal import CSpawn
internal import Glibc
internal import Synchronization

/// The loop on a child's own thread: spawns it, writes requests, reads answers and stderr, reaps it.
/// Everything here runs on that one thread; shared state lives in ``ChildProcess``.
final class ChildDriver {
    private let child: ChildProcess
    private let mode: ChildMode
    private let maxOutputBytes: Int

    private var pid: pid_t = 0
    private var stdinFD: Int32 = -1
    private var stdoutFD: Int32 = -1
    private var stderrFD: Int32 = -1

    private var job: ChildJob?
    private var writes = WriteQueue()
    private var output = OutputBuffer()
    private var tail = StderrTail()
    /// Persistent: the header of the answer being read.
    private var answer: PersistentFraming.AnswerHeader?
    /// Why the child was killed by us other than through `kill()` (persistent protocol broken).
    private var protocolError: String?
    private var outputOverflow = false
    /// Raw wait status once reaped (nil inside if it was lost).
    private var reaped: Int32?? = nil
    private var reapedAt: ContinuousClock.Instant?
    /// When stdout reached EOF (persistent: the child is expected to exit soon after).
    private var stdoutClosedAt: ContinuousClock.Instant?
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)

    init(child: ChildProcess) {
        self.child = child
        self.mode = child.command.mode
        self.maxOutputBytes = child.command.maxOutputBytes
    }

    deinit {
        self.scratch.deallocate()
    }

    func run() {
        /// What a job queued after the end is answered with (besides `cancelled` after a kill).
        var failure: ProcessorError?
        defer { self.child.finish(answeringLateJobsWith: failure) }
        if self.mode == .oneShot {
            // The child is spawned once its batch is here (it is handed over right after launch).
            guard let job = self.waitForFirstJob() else { return }
            self.job = job
            self.writes = WriteQueue(job.request)
        }
        if self.child.wasKilled {
            self.job?.continuation.resume(returning: .failure(.cancelled))
            self.job = nil
            self.child.takeJob()?.continuation.resume(returning: .failure(.cancelled))
            return
        }
        do {
            try self.spawn()
        } catch {
            (self.job ?? self.child.takeJob())?.continuation.resume(returning: .failure(error))
            self.job = nil
            failure = error
            return
        }
        _ = self.child.spawned(self.pid)
        if self.mode == .oneShot, self.writes.isEmpty { self.closeStdin() }
        self.loop()
        self.closeAll()
        self.finishJob()
    }

    // MARK: Spawning

    private func spawn() throws(ProcessorError) {
        let environment = ChildEnvironment.build(adding: self.child.command.environment)
        let arguments = ["/bin/sh", "-c", self.child.command.command]
        try ProcessPipes.spawnLock.withLock { _ throws(ProcessorError) in
            let stdinPipe = try ProcessPipes.makeLocked(nonBlocking: false)
            let stdoutPipe: (read: Int32, write: Int32)
            let stderrPipe: (read: Int32, write: Int32)
            do throws(ProcessorError) {
                stdoutPipe = try ProcessPipes.makeLocked(nonBlocking: false)
            } catch {
                Self.close(stdinPipe.read, stdinPipe.write)
                throw error
            }
            do throws(ProcessorError) {
                stderrPipe = try ProcessPipes.makeLocked(nonBlocking: false)
            } catch {
                Self.close(stdinPipe.read, stdinPipe.write, stdoutPipe.read, stdoutPipe.write)
                throw error
            }
            let childEnds = [Self.aboveStandard(stdinPipe.read), Self.aboveStandard(stdoutPipe.write),
                             Self.aboveStandard(stderrPipe.write)]
            let ours = [Self.aboveStandard(stdinPipe.write), Self.aboveStandard(stdoutPipe.read),
                        Self.aboveStandard(stderrPipe.read)]
            defer { Self.close(childEnds[0], childEnds[1], childEnds[2]) }
            let result = Self.posixSpawn(arguments: arguments, environment: environment, stdio: childEnds)
            guard case let .success(pid) = result else {
                Self.close(ours[0], ours[1], ours[2])
                if case let .failure(error) = result { throw error }
                return
            }
            self.pid = pid
            (self.stdinFD, self.stdoutFD, self.stderrFD) = (ours[0], ours[1], ours[2])
        }
        for fd in [self.stdinFD, self.stdoutFD, self.stderrFD] { ProcessPipes.setNonBlocking(fd) }
        // Bigger pipes mean fewer wake-ups for big batches; refused sizes (pipe-max-size) keep the default.
        _ = fcntl(self.stdinFD, Self.setPipeSize, Int32(1 << 20))
        _ = fcntl(self.stdoutFD, Self.setPipeSize, Int32(1 << 20))
    }

    /// `F_SETPIPE_SZ` (Linux; not exported by Swift's Glibc).
    private static let setPipeSize: Int32 = 1031

    /// `fd` if it is above 2, else a duplicate above 2 (so the child's dup2 onto 0–2 cannot clobber another end).
    private static func aboveStandard(_ fd: Int32) -> Int32 {
        guard fd <= 2 else { return fd }
        let duplicate = fcntl(fd, F_DUPFD_CLOEXEC, Int32(3))
        guard duplicate >= 0 else { return fd }
        _ = Glibc.close(fd)
        return duplicate
    }

    private static func close(_ fds: Int32...) {
        for fd in fds where fd >= 0 { _ = Glibc.close(fd) }
    }

    private static func posixSpawn(arguments: [String], environment: [String], stdio: [Int32])
        -> Result<pid_t, ProcessorError>
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, fd) in stdio.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, fd, Int32(target))
        }
        // Everything above stdio is closed in the child, also descriptors another thread opens without
        // close-on-exec while we spawn (enumerating /proc/self/fd beforehand would race with them).
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setpgroup(&attributes, 0)
        let flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var argv = arguments.map { strdup($0) } + [nil]
        var envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, arguments[0], &actions, &attributes, &argv, &envp)
        guard code == 0 else {
            return .failure(.spawnFailed("posix_spawn \(arguments[0]): \(SystemError.message(code))"))
        }
        return .success(pid)
    }

    // MARK: The loop

    private func loop() {
        var pollSet: [pollfd] = []
        while true {
            self.takeJob()
            var timeout = ChildProcess.exitCheckMilliseconds
            if self.reaped == nil {
                self.waitForExit(blocking: false)
            }
            if self.reaped == nil, let closedAt = self.stdoutClosedAt, self.mode == .persistent {
                // A persistent child without stdout is of no use; if it does not exit by itself soon (it usually
                // is exiting: a crash closes stdout first), it is killed.
                let left = ChildProcess.closedStdoutGrace - (ContinuousClock.now - closedAt)
                if left <= .zero {
                    if self.protocolError == nil, !self.child.wasKilled {
                        self.protocolError = "the persistent processor closed stdout"
                    }
                    self.child.killBroken()
                } else {
                    timeout = min(timeout, Self.milliseconds(left))
                }
            }
            if self.reaped == nil, self.stdoutFD < 0, self.stderrFD < 0,
               self.mode == .oneShot || self.child.wasKilled || self.protocolError != nil {
                // Both pipes are closed: the child has exited or is about to; wait for it (a kill ends the wait).
                self.waitForExit(blocking: true)
            }
            if let reapedAt = self.reapedAt {
                if self.stdoutFD < 0, self.stderrFD < 0 { return }
                let left = ChildProcess.drainGrace - (ContinuousClock.now - reapedAt)
                if left <= .zero { return }
                timeout = Self.milliseconds(left)
            }
            pollSet.removeAll(keepingCapacity: true)
            pollSet.append(pollfd(fd: self.child.wakeReadFD, events: Int16(POLLIN), revents: 0))
            let watchStdin = self.stdinFD >= 0 && !self.writes.isEmpty
            pollSet.append(pollfd(fd: watchStdin ? self.stdinFD : -1, events: Int16(POLLOUT), revents: 0))
            pollSet.append(pollfd(fd: self.stdoutFD, events: Int16(POLLIN), revents: 0))
            pollSet.append(pollfd(fd: self.stderrFD, events: Int16(POLLIN), revents: 0))
            let ready = pollSet.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
            if ready < 0 { continue }  // EINTR
            let active = Int16(POLLIN | POLLOUT | POLLHUP | POLLERR)
            if pollSet[0].revents != 0 { self.drainWake() }
            if pollSet[1].revents & active != 0 { self.writeInput() }
            if pollSet[2].revents & active != 0 { self.readOutput() }
            if pollSet[3].revents & active != 0 { self.readStderr() }
        }
    }

    /// Waits on the wake pipe for the one-shot job; nil if the child was killed first.
    private func waitForFirstJob() -> ChildJob? {
        while true {
            if let job = self.child.takeJob() { return job }
            if self.child.wasKilled { return nil }
            var wake = pollfd(fd: self.child.wakeReadFD, events: Int16(POLLIN), revents: 0)
            if poll(&wake, 1, -1) > 0 { self.drainWake() }
        }
    }

    /// `duration` in whole milliseconds for poll(2), rounded up.
    private static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        return Int32(clamping: max(0, seconds) * 1000 + max(0, attoseconds) / 1_000_000_000_000_000 + 1)
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        _ = buffer.withUnsafeMutableBytes { Glibc.read(self.child.wakeReadFD, $0.baseAddress, $0.count) }
    }

    /// Takes a new job when none is running.
    private func takeJob() {
        guard self.mode == .persistent, self.job == nil, let job = self.child.takeJob() else { return }
        if self.reaped != nil || self.stdinFD < 0 || self.protocolError != nil {
            job.continuation.resume(returning: self.child.wasKilled ? .failure(.cancelled) : .childGone)
            return
        }
        self.job = job
        self.tail = StderrTail()
        self.writes = WriteQueue(job.request)
    }

    /// Checks (or waits) for the child's exit without reaping, then reaps it (after killing what is left of its
    /// group).
    private func waitForExit(blocking: Bool) {
        var info = siginfo_t()
        var result: Int32
        repeat {
            result = waitid(P_PID, id_t(self.pid), &info, WEXITED | WNOWAIT | (blocking ? 0 : WNOHANG))
        } while result < 0 && errno == EINTR
        // ECHILD: the status is gone (reaped elsewhere); treat the child as ended.
        if result == 0, info._sifields._sigchld.si_pid == 0 { return }
        self.reaped = .some(self.child.reap(self.pid))
        self.reapedAt = .now
        self.closeStdin()
    }

    // MARK: stdin

    private func writeInput() {
        while !self.writes.isEmpty {
            let written = self.writes.writev(to: self.stdinFD)
            if written > 0 { continue }
            if written == -2 { return }  // EAGAIN
            // EPIPE (the child closed stdin or exited) or another error: stop writing. A one-shot child may exit
            // without reading its input; its exit status and output decide. A persistent child must read it all.
            if self.mode == .persistent, self.protocolError == nil, self.reaped == nil {
                self.protocolError =
                    "the persistent processor stopped reading its input (\(SystemError.message(errno)))"
                self.child.killBroken()
            }
            self.closeStdin()
            return
        }
        if self.mode == .oneShot { self.closeStdin() }
    }

    private func closeStdin() {
        if self.stdinFD >= 0 { _ = Glibc.close(self.stdinFD) }
        self.stdinFD = -1
        self.writes = WriteQueue()
    }

    // MARK: stdout

    private func readOutput() {
        let limit: Int
        switch self.mode {
        case .oneShot:
            // One byte over the limit tells an overflow.
            limit = self.maxOutputBytes == .max ? .max : self.maxOutputBytes + 1
        case .persistent:
            if let answer = self.answer { limit = PersistentFraming.answerHeaderSize + answer.length }
            else { limit = PersistentFraming.answerHeaderSize + 64 << 10 }
        }
        let count = self.output.read(from: self.stdoutFD, limit: limit)
        if count == 0 {
            _ = Glibc.close(self.stdoutFD)
            self.stdoutFD = -1
            self.stdoutClosedAt = .now
            return
        }
        if count < 0 { return }  // EAGAIN, EINTR
        switch self.mode {
        case .oneShot:
            if self.output.count > self.maxOutputBytes {
                self.outputOverflow = true
                self.child.killBroken()
                _ = Glibc.close(self.stdoutFD)
                self.stdoutFD = -1
            }
        case .persistent:
            self.parseAnswer()
        }
    }

    private func parseAnswer() {
        guard self.protocolError == nil else { return }
        guard let job = self.job else {
            self.breakProtocol("it wrote \(self.output.count) bytes on stdout while no batch was pending "
                               + "(print to stderr, never to stdout)")
            return
        }
        if self.answer == nil {
            guard self.output.count >= PersistentFraming.answerHeaderSize else { return }
            switch PersistentFraming.parseAnswerHeader(self.output.bytes.prefix(PersistentFraming.answerHeaderSize),
                                                       maxOutputBytes: self.maxOutputBytes) {
            case let .invalid(message):
                self.breakProtocol(message)
                return
            case let .header(header):
                // The buffer grows as the payload arrives (never allocated up front from the announced length).
                self.answer = header
            }
        }
        guard let answer = self.answer else { return }
        let total = PersistentFraming.answerHeaderSize + answer.length
        guard self.output.count >= total else { return }
        guard self.output.count == total, self.writes.isEmpty else {
            self.breakProtocol(self.writes.isEmpty ? "it wrote more bytes than its answer holds"
                               : "it answered before it read the whole request")
            return
        }
        let payload = self.output.take().dropFirst(PersistentFraming.answerHeaderSize)
        self.answer = nil
        self.job = nil
        if answer.isOK {
            job.continuation.resume(returning: .output(payload, stderrTail: self.tail.text))
        } else {
            job.continuation.resume(returning: .remoteError(String(decoding: payload, as: UTF8.self)))
        }
    }

    private func breakProtocol(_ message: String) {
        self.protocolError = "persistent protocol broken: " + message
        self.child.killBroken()
        if self.stdoutFD >= 0 { _ = Glibc.close(self.stdoutFD) }
        self.stdoutFD = -1
    }

    // MARK: stderr

    private func readStderr() {
        let count = Glibc.read(self.stderrFD, self.scratch.baseAddress, self.scratch.count)
        if count == 0 {
            _ = Glibc.close(self.stderrFD)
            self.stderrFD = -1
        } else if count > 0 {
            self.tail.append(UnsafeRawBufferPointer(rebasing: self.scratch[0..<count]))
        }
    }

    // MARK: The end

    private func closeAll() {
        self.closeStdin()
        for fd in [self.stdoutFD, self.stderrFD] where fd >= 0 { _ = Glibc.close(fd) }
        self.stdoutFD = -1
        self.stderrFD = -1
    }

    /// Answers the job still running when the child is gone.
    private func finishJob() {
        guard let job = self.job else { return }
        self.job = nil
        let tail = self.tail.text
        let outcome: ChildOutcome
        if self.child.wasKilled {
            outcome = .failure(.cancelled)
        } else if let protocolError = self.protocolError {
            outcome = .failure(.badOutput(protocolError, stderrTail: tail))
        } else if self.outputOverflow {
            let message = "more than \(self.maxOutputBytes) bytes on stdout (the limit)"
            outcome = .failure(.badOutput(message, stderrTail: tail))
        } else if let status = self.reaped ?? nil {
            if let signal = WaitStatus.signal(status) {
                outcome = .failure(.killed(signal: signal, stderrTail: tail))
            } else if let code = WaitStatus.exitCode(status), code != 0 {
                outcome = .failure(.exited(status: code, stderrTail: tail))
            } else if self.mode == .oneShot {
                outcome = .output(self.output.take(), stderrTail: tail)
            } else {
                outcome = .failure(.badOutput("the persistent processor exited (status 0) before it answered",
                                              stderrTail: tail))
            }
        } else {
            outcome = .failure(.badOutput("the child's exit status was lost (reaped elsewhere, or SIGCHLD ignored)",
                                          stderrTail: tail))
        }
        job.continuation.resume(returning: outcome)
    }
}

/// Bytes to write, as slices of their own storage; written with `writev`, 64 slices at a time.
struct WriteQueue {
    private var slices: [ArraySlice<UInt8>]
    private var head = 0

    init(_ slices: [ArraySlice<UInt8>] = []) {
        self.slices = slices.filter { !$0.isEmpty }
    }

    var isEmpty: Bool { self.head >= self.slices.count }

    /// One `writev`; returns bytes written, -2 for EAGAIN/EINTR, -1 for another error (errno set).
    mutating func writev(to fd: Int32) -> Int {
        let count = min(64, self.slices.count - self.head)
        var vectors: [iovec] = []
        vectors.reserveCapacity(count)
        func gather(_ i: Int) -> Int {
            if i == count {
                return vectors.withUnsafeBufferPointer { Glibc.writev(fd, $0.baseAddress, Int32($0.count)) }
            }
            return self.slices[self.head + i].withUnsafeBytes { bytes in
                let base = UnsafeMutableRawPointer(mutating: bytes.baseAddress)
                vectors.append(iovec(iov_base: base, iov_len: bytes.count))
                return gather(i + 1)
            }
        }
        let written = gather(0)
        if written < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -2 : -1 }
        var left = written
        while left > 0, self.head < self.slices.count {
            let first = self.slices[self.head]
            if first.count <= left {
                left -= first.count
                self.slices[self.head] = []
                self.head += 1
            } else {
                self.slices[self.head] = first.dropFirst(left)
                left = 0
            }
        }
        return written
    }
}

/// Stdout bytes read straight into one growing array.
struct OutputBuffer {
    private var storage: [UInt8] = []
    private(set) var count = 0

    var bytes: ArraySlice<UInt8> { self.storage[0..<self.count] }

    /// Makes room for `total` bytes in all (an answer whose length is known).
    mutating func reserve(total: Int) {
        guard self.storage.count < total else { return }
        // One allocation and a memcpy of what was read (never a byte loop, never zero-filling).
        let old = self.storage
        let used = self.count
        self.storage = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            old.withUnsafeBufferPointer { source in
                if used > 0, let base = buffer.baseAddress, let from = source.baseAddress {
                    base.initialize(from: from, count: used)
                }
            }
            // The rest is filled by read(2) before it is ever looked at; initialise it for Swift's sake cheaply.
            if let base = buffer.baseAddress { (base + used).initialize(repeating: 0, count: total - used) }
            initialized = total
        }
    }

    /// One `read` of at most `limit - count` bytes. Returns the count read, 0 at EOF (or when the limit is
    /// reached), -1 for EAGAIN/EINTR or an error.
    mutating func read(from fd: Int32, limit: Int) -> Int {
        let room = limit - self.count
        guard room > 0 else { return 0 }
        if self.storage.count - self.count < min(room, 64 << 10) {
            let grown = min(limit, max(self.storage.count * 2, self.count + (64 << 10)))
            self.reserve(total: grown)
        }
        let start = self.count
        let wanted = min(room, self.storage.count - start, 1 << 20)
        let result = self.storage.withUnsafeMutableBytes { raw in
            Glibc.read(fd, raw.baseAddress.map { $0 + start }, wanted)
        }
        if result > 0 { self.count += result }
        return result < 0 ? -1 : result
    }

    /// The bytes read, without spare capacity worth keeping; the buffer starts over empty.
    mutating func take() -> ArraySlice<UInt8> {
        defer {
            self.storage = []
            self.count = 0
        }
        if self.storage.count - self.count > self.count / 8 {
            return Array(self.storage[0..<self.count])[...]
        }
        return self.storage[0..<self.count]
    }
}

/// The last ``ChildProcess/stderrTailBytes`` of stderr.
struct StderrTail {
    private var bytes: [UInt8] = []

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        let keep = ChildProcess.stderrTailBytes
        if chunk.count >= keep {
            self.bytes = Array(chunk.suffix(keep))
            return
        }
        self.bytes.append(contentsOf: chunk)
        if self.bytes.count > 2 * keep { self.bytes.removeFirst(self.bytes.count - keep) }
    }

    /// The tail as text: at most the last 4 KiB, starting at a character boundary, trimmed.
    var text: String {
        var start = max(0, self.bytes.count - ChildProcess.stderrTailBytes)
        while start < self.bytes.count, self.bytes[start] & 0xC0 == 0x80 { start += 1 }
        let text = String(decoding: self.bytes[start...], as: UTF8.self)
        return String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

/// The environment of a child: the node's own, with the given variables added or replaced.
enum ChildEnvironment {
    static func build(adding variables: [(name: String, value: String)]) -> [String] {
        let replaced = Set(variables.map(\.name) + ChildEnvironment.perBatchNames)
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            let name = text.prefix { $0 != "=" }
            if !replaced.contains(String(name)) { result.append(text) }
            pointer += 1
        }
        return result + variables.map { "\($0.name)=\($0.value)" }
    }

    /// Variables that describe one batch (and the persistent-mode flag); never inherited from the node.
    static let perBatchNames = ["VALKEYFLIGHT_KEY", "VALKEYFLIGHT_QUEUE", "VALKEYFLIGHT_ATTEMPT", "VALKEYFLIGHT_ID",
                                "VALKEYFLIGHT_PERSISTENT"]
}
