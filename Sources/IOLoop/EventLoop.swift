internal import CEpoll
internal import Glibc
import Synchronization

/// Something registered with a loop's epoll set: a listener or a connection. Touched only on its loop thread.
package protocol LoopHandler: AnyObject {
    /// Called on the loop thread with the ready epoll event bits.
    func handleEvents(_ events: UInt32, runner: LoopRunner)
    /// Called on the loop thread when the loop shuts down; must close the file descriptor.
    func closeForShutdown(runner: LoopRunner)
    /// Called about every `tickInterval` of the loop (timeouts, keepalive and idle checks).
    func tick(now: ContinuousClock.Instant, runner: LoopRunner)
}

extension LoopHandler {
    package func tick(now: ContinuousClock.Instant, runner: LoopRunner) {}
}

/// A byte-stream connection as the loop sees it: readable, writable, shut down, ticked. `handleEvents` splits
/// the epoll bits into `readable` (data, hang-up or error: the next read reports which) and `writable`.
package protocol ByteStreamHandler: LoopHandler {
    /// The socket has data, or was closed or failed (a read tells which).
    func readable(runner: LoopRunner)
    /// The socket can take more bytes (only reported while the handler watches ``Readiness/writable``).
    func writable(runner: LoopRunner)
}

extension ByteStreamHandler {
    package func handleEvents(_ events: UInt32, runner: LoopRunner) {
        if events & (Readiness.readable | Readiness.hangup) != 0 { self.readable(runner: runner) }
        if events & Readiness.writable != 0 { self.writable(runner: runner) }
    }
}

/// The epoll(7) bits handlers register for (epoll always reports error and hang-up).
package enum Readiness {
    package static let readable = EPOLLIN.rawValue
    package static let writable = EPOLLOUT.rawValue
    package static let hangup = EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue
}

/// One event-loop thread: an epoll set plus an eventfd for wake-ups. Work from other threads is handed in as jobs
/// that run on the loop thread with access to its ``LoopRunner`` (the thread-confined state). A job handed in
/// from the loop thread itself costs no wake-up: the loop looks at its jobs before it waits again.
///
/// The set is level-triggered: a handler may stop reading before a socket is drained (a per-wakeup budget) and
/// watches writability only while a write waits for it.
///
/// The loop is also a `TaskExecutor`: tasks that prefer it run on the loop thread between readiness checks, so
/// a reply resumes its caller without a hop to another thread.
package final class EventLoop: Sendable {
    private struct Inbox {
        var jobs: [@Sendable (LoopRunner) -> Void] = []
        var signalled = false
        var stopped = false
    }

    let epollFD: Int32
    let wakeFD: Int32
    /// How often handlers get `tick`.
    package let tickInterval: Duration
    private let inbox = Mutex(Inbox())
    /// `pthread_self()` of the loop thread, 0 until it started.
    private let loopThread = Atomic<UInt>(0)

    /// Creates the epoll set and wake-up eventfd (the thread starts with ``startThread()``).
    /// - Throws: `IOLoopError.systemCall` naming `epoll_create1`, `eventfd` or `epoll_ctl`.
    package init(tickInterval: Duration = .milliseconds(50)) throws(IOLoopError) {
        FreedMemory.retain()
        self.tickInterval = tickInterval
        let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard ep >= 0 else { throw .systemCall(name: "epoll_create1", errno: errno) }
        let wake = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wake >= 0 else {
            let e = errno
            close(ep)
            throw .systemCall(name: "eventfd", errno: e)
        }
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = 0
        guard epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) == 0 else {
            let e = errno
            close(ep)
            close(wake)
            throw .systemCall(name: "epoll_ctl", errno: e)
        }
        self.epollFD = ep
        self.wakeFD = wake
    }

    /// True on the loop's own thread.
    package var inLoopThread: Bool { self.loopThread.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Runs `job` on the loop thread soon. Jobs submitted after the loop stopped are dropped. Many jobs before
    /// the loop wakes cost one wake-up (which is what batches concurrent callers' writes into one).
    package func execute(_ job: @escaping @Sendable (LoopRunner) -> Void) {
        let mustSignal = self.inbox.withLock { inbox -> Bool in
            guard !inbox.stopped else { return false }
            inbox.jobs.append(job)
            if inbox.signalled { return false }
            inbox.signalled = true
            return true
        }
        if mustSignal && !self.inLoopThread { self.signal() }
    }

    private func signal() {
        var one: UInt64 = 1
        _ = write(self.wakeFD, &one, 8)
    }

    /// Takes pending jobs (loop thread only).
    fileprivate func takeJobs() -> (jobs: [@Sendable (LoopRunner) -> Void], stopped: Bool) {
        self.inbox.withLock { inbox in
            let jobs = inbox.jobs
            inbox.jobs = []
            inbox.signalled = false
            return (jobs, inbox.stopped)
        }
    }

    fileprivate var hasWork: Bool { self.inbox.withLock { !$0.jobs.isEmpty || $0.stopped } }

    fileprivate func drainWakeFD() {
        var drained: UInt64 = 0
        _ = read(self.wakeFD, &drained, 8)
    }

    fileprivate func markStarted() { self.loopThread.store(UInt(pthread_self()), ordering: .relaxed) }

    /// Asks the loop thread to close everything and exit.
    package func stop() {
        self.inbox.withLock { $0.stopped = true }
        self.signal()
    }

    /// Starts the thread. The runner lives on that thread until `stop()`.
    /// - Throws: `IOLoopError.systemCall(name: "pthread_create", …)`.
    package func startThread() throws(IOLoopError) {
        let box = Unmanaged.passRetained(ThreadStart(loop: self))
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, eventLoopThreadEntry, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw .systemCall(name: "pthread_create", errno: rc)
        }
        pthread_detach(tid)
    }

    deinit {
        close(self.epollFD)
        close(self.wakeFD)
    }
}

extension EventLoop: TaskExecutor {
    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.execute { _ in job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

private final class ThreadStart {
    let loop: EventLoop
    init(loop: EventLoop) { self.loop = loop }
}

/// A nonisolated function, so the C entry point carries no actor isolation.
private func eventLoopThreadEntry(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let arg else { return nil }
    let start = Unmanaged<ThreadStart>.fromOpaque(arg).takeRetainedValue()
    let runner = LoopRunner(loop: start.loop)
    runner.run()
    return nil
}

/// The thread-confined half of an event loop: registered handlers by id. Only ever used on its loop thread.
package final class LoopRunner {
    /// The loop this runner drives.
    package let loop: EventLoop
    private var handlers: [UInt64: any LoopHandler] = [:]
    private var nextID: UInt64 = 1
    /// One receive buffer shared by all connections of this loop (reads are handled one at a time).
    package var readBuffer = [UInt8](repeating: 0, count: 1 << 20)

    init(loop: EventLoop) { self.loop = loop }

    /// Registers `fd` with `events`; returns the handler id (also the epoll user data). Ids are never reused,
    /// so an event for a descriptor deregistered (and perhaps reused) since it was reported finds no handler.
    /// - Throws: `IOLoopError.systemCall(name: "epoll_ctl(ADD)", …)` (ENOMEM, ENOSPC past `max_user_watches`).
    package func register(fd: Int32, events: UInt32, handler: any LoopHandler) throws(IOLoopError) -> UInt64 {
        let id = self.nextID
        self.nextID += 1
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = id
        guard epoll_ctl(self.loop.epollFD, EPOLL_CTL_ADD, fd, &ev) == 0 else {
            throw .systemCall(name: "epoll_ctl(ADD)", errno: errno)
        }
        self.handlers[id] = handler
        return id
    }

    /// Keeps a loop-confined object without a descriptor (found later through `handler(_:)`).
    package func attach(_ handler: any LoopHandler) -> UInt64 {
        let id = self.nextID
        self.nextID += 1
        self.handlers[id] = handler
        return id
    }

    /// Forgets an attached object.
    package func detach(_ id: UInt64) { self.handlers[id] = nil }

    /// Changes the interest set of a registered descriptor; returns 0 or the errno of epoll_ctl(MOD).
    @discardableResult
    package func modify(fd: Int32, id: UInt64, events: UInt32) -> Int32 {
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = id
        return epoll_ctl(self.loop.epollFD, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : errno
    }

    /// Removes a descriptor (call before closing it). A failure (EBADF, ENOENT) leaves nothing watched.
    package func unregister(fd: Int32, id: UInt64) {
        _ = epoll_ctl(self.loop.epollFD, EPOLL_CTL_DEL, fd, nil)
        self.handlers[id] = nil
    }

    /// The handler registered under `id`, if still present.
    package func handler(_ id: UInt64) -> (any LoopHandler)? { self.handlers[id] }

    func run() {
        self.loop.markStarted()
        var events = [epoll_event](repeating: epoll_event(), count: 128)
        let tick = self.loop.tickInterval
        let tickMilliseconds = Int32(clamping: max(1, tick.components.seconds * 1000 + tick.components.attoseconds / 1_000_000_000_000_000))
        var nextTick = ContinuousClock.now.advanced(by: tick)
        var stop = false
        while !stop {
            let timeout: Int32 = self.loop.hasWork ? 0 : tickMilliseconds
            let n = events.withUnsafeMutableBufferPointer { buf in
                epoll_wait(self.loop.epollFD, buf.baseAddress, Int32(buf.count), timeout)
            }
            if n < 0 && errno != EINTR { break }
            for i in 0..<max(Int(n), 0) {
                let id = events[i].data.u64
                if id == 0 {
                    self.loop.drainWakeFD()
                } else if let handler = self.handlers[id] {
                    handler.handleEvents(events[i].events, runner: self)
                }
            }
            let (jobs, stopped) = self.loop.takeJobs()
            for job in jobs { job(self) }
            if stopped { stop = true }
            let now = ContinuousClock.now
            if now >= nextTick {
                nextTick = now.advanced(by: tick)
                for handler in Array(self.handlers.values) { handler.tick(now: now, runner: self) }
                FreedMemory.returnIfQuiet()
            }
        }
        for handler in Array(self.handlers.values) { handler.closeForShutdown(runner: self) }
        self.handlers = [:]
    }
}

/// A group of event loops; connections are spread round-robin.
package final class EventLoopGroup: Sendable {
    /// The loops, each on its own thread.
    package let loops: [EventLoop]
    private let next = Atomic<Int>(0)

    /// Starts `count` (at least 1) loop threads ticking every `tickInterval`.
    /// - Throws: `IOLoopError.systemCall` when a loop cannot be created or its thread started.
    package init(count: Int, tickInterval: Duration = .milliseconds(50)) throws(IOLoopError) {
        // A peer that closes while we write must not kill the process: writes report EPIPE instead
        // (plain sockets also use MSG_NOSIGNAL; OpenSSL writes through write(2)).
        signal(SIGPIPE, SIG_IGN)
        var loops: [EventLoop] = []
        for _ in 0..<max(1, count) {
            let loop = try EventLoop(tickInterval: tickInterval)
            try loop.startThread()
            loops.append(loop)
        }
        self.loops = loops
    }

    /// The next loop, round-robin.
    package func nextLoop() -> EventLoop {
        let i = self.next.wrappingAdd(1, ordering: .relaxed).oldValue
        return self.loops[i % self.loops.count]
    }

    /// Stops every loop (each closes its handlers, then its thread exits).
    package func stop() {
        for loop in self.loops { loop.stop() }
    }

    /// Number of online processors (default loop count).
    package static var defaultCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// A process-wide group started on first use and never stopped (client connections of every channel and
    /// RESP client share it, so none starts threads of its own). Our own invariant, not wire data: a process
    /// that cannot create an epoll set or a thread cannot do any I/O.
    package static func processWide(count: Int, tickInterval: Duration) -> EventLoopGroup {
        do {
            return try EventLoopGroup(count: count, tickInterval: tickInterval)
        } catch {
            preconditionFailure("cannot start the I/O event loops: \(error)")
        }
    }
}
