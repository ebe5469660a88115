import Glibc
import Synchronization

/// An object whose file descriptor the loop watches. Every method is called on the loop thread only.
protocol EventLoopHandler: AnyObject, Sendable {
    /// Readiness bits from epoll for the handler's descriptor.
    func handleEvents(_ events: UInt32)
    /// Writes what callers queued since the last flush.
    func flush()
    /// Fails operations whose deadline (monotonic nanoseconds) has passed.
    func checkDeadlines(now: UInt64)
}

/// Monotonic time in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Readiness bits used by handlers (the poll(2) values).
let readableEvent = UInt32(POLLIN)
let writableEvent = UInt32(POLLOUT)
let hangupEvents = UInt32(POLLHUP | POLLERR | POLLNVAL)

/// One readiness loop on a thread it owns. Sockets are registered here; readiness, queued flushes, tasks
/// and deadline checks all run on that thread, which resumes the waiting Swift tasks, so no blocking call
/// runs on Swift's cooperative pool.
///
/// It waits with poll(2): Swift's `Glibc` module does not export `<sys/epoll.h>`, RESP may not depend on a
/// C shim, and `dlsym` lookups fail in the project's static binary. A client has a handful of sockets, so
/// the per-wakeup cost of poll over them is negligible next to the system calls themselves.
final class EventLoop: Sendable {
    /// The loop all RESP connections of the process share.
    static let shared = EventLoop()

    private struct Registration {
        var handler: any EventLoopHandler
        var events: UInt32
    }

    private struct State {
        var handlers: [Int32: Registration] = [:]
        var flushQueue: [any EventLoopHandler] = []
        var tasks: [@Sendable () -> Void] = []
        var wakePending = false
        /// Bumped on every change of `handlers`, so the loop rebuilds its poll set only then.
        var generation = 0
    }

    /// The read and write ends of the self-pipe that wakes the loop.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let state = Mutex(State())
    /// `pthread_self()` of the loop thread, 0 until it started.
    private let loopThread = Atomic<UInt>(0)

    private init() {
        var fds: [Int32] = [-1, -1]
        let result = fds.withUnsafeMutableBufferPointer { pipe($0.baseAddress) }
        // Our own invariant, not wire data: without a wake pipe the process cannot do any I/O.
        precondition(result == 0, "pipe2 failed: errno \(errno)")
        self.wakeRead = fds[0]
        self.wakeWrite = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        startThread(Unmanaged.passRetained(self).toOpaque())
    }

    /// Starts watching `fd` for `events` (readable/writable bits) on behalf of `handler`.
    func register(fd: Int32, events: UInt32, handler: any EventLoopHandler) {
        self.state.withLock {
            $0.handlers[fd] = Registration(handler: handler, events: events)
            $0.generation += 1
        }
        if !self.inLoopThread { self.wake() }
    }

    /// Changes the watched events of a registered descriptor. Called on the loop thread.
    func modify(fd: Int32, events: UInt32) {
        self.state.withLock {
            $0.handlers[fd]?.events = events
            $0.generation += 1
        }
    }

    /// Stops watching `fd` (before it is closed). Called on the loop thread.
    func deregister(fd: Int32) {
        self.state.withLock {
            $0.handlers.removeValue(forKey: fd)
            $0.generation += 1
        }
    }

    /// Asks the loop to call `handler.flush()` soon. Many requests before the loop wakes cost one wakeup,
    /// which is what batches concurrent callers' commands into one write.
    func scheduleFlush(_ handler: any EventLoopHandler) {
        let wake = self.state.withLock { state in
            state.flushQueue.append(handler)
            defer { state.wakePending = true }
            return !state.wakePending
        }
        if wake, !self.inLoopThread { self.wake() }
    }

    /// Runs `task` on the loop thread.
    func execute(_ task: @escaping @Sendable () -> Void) {
        let wake = self.state.withLock { state in
            state.tasks.append(task)
            defer { state.wakePending = true }
            return !state.wakePending
        }
        // The loop looks at its queues before it next waits, so it needs no wakeup from its own thread.
        if wake, !self.inLoopThread { self.wake() }
    }

    /// True on the loop's own thread.
    var inLoopThread: Bool { self.loopThread.load(ordering: .relaxed) == UInt(pthread_self()) }

    private func wake() {
        var one: UInt8 = 1
        _ = Glibc.write(self.wakeWrite, &one, 1)
    }

    /// The loop body; runs forever on its own thread.
    fileprivate func run() {
        self.loopThread.store(UInt(pthread_self()), ordering: .relaxed)
        var pollFDs: [pollfd] = []
        var handlers: [any EventLoopHandler] = []
        var drain = [UInt8](repeating: 0, count: 256)
        var lastDeadlineCheck: UInt64 = 0
        var generation = -1
        while true {
            let pendingWork = self.state.withLock { state in
                if state.generation != generation {
                    generation = state.generation
                    pollFDs.removeAll(keepingCapacity: true)
                    handlers.removeAll(keepingCapacity: true)
                    pollFDs.append(pollfd(fd: self.wakeRead, events: Int16(POLLIN), revents: 0))
                    for (fd, registration) in state.handlers {
                        pollFDs.append(
                            pollfd(fd: fd, events: Int16(truncatingIfNeeded: registration.events), revents: 0))
                        handlers.append(registration.handler)
                    }
                }
                return !state.flushQueue.isEmpty || !state.tasks.isEmpty
            }
            let count = pollFDs.withUnsafeMutableBufferPointer { buffer in
                poll(buffer.baseAddress, nfds_t(buffer.count), pendingWork ? 0 : 20)
            }
            if count > 0 {
                if pollFDs[0].revents != 0 {
                    _ = drain.withUnsafeMutableBytes { Glibc.read(self.wakeRead, $0.baseAddress, $0.count) }
                }
                for i in 1..<pollFDs.count where pollFDs[i].revents != 0 {
                    handlers[i - 1].handleEvents(UInt32(UInt16(bitPattern: pollFDs[i].revents)))
                }
            }
            let (flushes, tasks) = self.state.withLock { state in
                defer {
                    state.flushQueue.removeAll(keepingCapacity: true)
                    state.tasks.removeAll(keepingCapacity: true)
                    state.wakePending = false
                }
                return (state.flushQueue, state.tasks)
            }
            for task in tasks { task() }
            for handler in flushes { handler.flush() }
            let now = monotonicNanoseconds()
            if now &- lastDeadlineCheck > 10_000_000 {
                lastDeadlineCheck = now
                for handler in handlers { handler.checkDeadlines(now: now) }
            }
        }
    }
}

/// The loop is also a task executor: tasks that prefer it run on the loop thread between readiness
/// checks, so a reply resumes its caller without a hop to another thread.
extension EventLoop: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// Starts a detached thread running the loop passed (retained) in `context`. A nonisolated function, so
/// the C entry point carries no actor isolation (see PLATFORM.md).
private func startThread(_ context: UnsafeMutableRawPointer) {
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { context in
            guard let context else { return nil }
            let loop = Unmanaged<EventLoop>.fromOpaque(context).takeRetainedValue()
            loop.run()
            return nil
        }, context)
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_detach(thread)
}

/// Runs a blocking call (name resolution) on a new short-lived thread and returns its result.
func runOnNewThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let job = ThreadJob { continuation.resume(returning: body()) }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(job).toOpaque()
        let result = pthread_create(
            &thread, nil,
            { context in
                guard let context else { return nil }
                Unmanaged<ThreadJob>.fromOpaque(context).takeRetainedValue().body()
                return nil
            }, context)
        if result == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<ThreadJob>.fromOpaque(context).takeRetainedValue().body()
        }
    }
}

private final class ThreadJob: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
