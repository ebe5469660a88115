internal import CEpoll
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

/// Readiness bits used by handlers (the epoll(7) values; epoll always reports error and hang-up).
let readableEvent = EPOLLIN.rawValue
let writableEvent = EPOLLOUT.rawValue
let hangupEvents = EPOLLHUP.rawValue | EPOLLERR.rawValue

/// One readiness loop on a thread it owns. Sockets are registered here; readiness, queued flushes, tasks
/// and deadline checks all run on that thread, which resumes the waiting Swift tasks, so no blocking call
/// runs on Swift's cooperative pool.
///
/// It waits with a level-triggered epoll(7) set (through the `CEpoll` shim, since Swift's `Glibc` module does
/// not export `<sys/epoll.h>`) and is woken by an eventfd. Level-triggered fits the handlers' readiness
/// protocol: a connection may stop reading before the socket is drained (its per-wakeup read budget) and
/// watches writability only while a write or read waits for it, as it did with poll(2).
final class EventLoop: Sendable {
    /// The loop all RESP connections of the process share.
    static let shared = EventLoop()

    private struct State {
        /// Handlers by registration id (the epoll user data); the id is never reused, so an event for a
        /// descriptor deregistered (and perhaps reused) since it was reported finds no handler.
        var handlers: [UInt64: any EventLoopHandler] = [:]
        /// Registration id of each watched descriptor.
        var ids: [Int32: UInt64] = [:]
        var nextID: UInt64 = 1
        var flushQueue: [any EventLoopHandler] = []
        var tasks: [@Sendable () -> Void] = []
        var wakePending = false
        /// Bumped on every change of `handlers`, so the loop refreshes its copy only then.
        var generation = 0
    }

    /// The epoll user data of the wake-up eventfd (registration ids start at 1).
    private static let wakeID: UInt64 = 0

    private let epollFD: Int32
    /// The eventfd that wakes the loop.
    private let wakeFD: Int32
    private let state = Mutex(State())
    /// `pthread_self()` of the loop thread, 0 until it started.
    private let loopThread = Atomic<UInt>(0)

    private init() {
        // Our own invariants, not wire data: without an epoll set and a wake-up descriptor the process cannot
        // do any I/O.
        let epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1 failed: errno \(errno)")
        let wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(wakeFD >= 0, "eventfd failed: errno \(errno)")
        var event = epoll_event()
        event.events = readableEvent
        event.data.u64 = Self.wakeID
        let added = epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event)
        precondition(added == 0, "epoll_ctl(ADD) of the wake-up eventfd failed: errno \(errno)")
        self.epollFD = epollFD
        self.wakeFD = wakeFD
        startThread(Unmanaged.passRetained(self).toOpaque())
    }

    /// Starts watching `fd` for `events` (readable/writable bits) on behalf of `handler`.
    /// - Throws: `RESPError.io(operation: "epoll_ctl(ADD)", …)` when the kernel refuses the descriptor
    ///   (ENOMEM, or ENOSPC past `/proc/sys/fs/epoll/max_user_watches`).
    func register(fd: Int32, events: UInt32, handler: any EventLoopHandler, endpoint: String) throws(RESPError) {
        let id = self.state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.handlers[id] = handler
            state.ids[fd] = id
            state.generation += 1
            return id
        }
        let code = self.control(EPOLL_CTL_ADD, fd: fd, events: events, id: id)
        if code != 0 {
            self.state.withLock { state in
                state.handlers.removeValue(forKey: id)
                state.ids.removeValue(forKey: fd)
                state.generation += 1
            }
            throw .io(operation: "epoll_ctl(ADD)", endpoint: endpoint, errno: code)
        }
        if !self.inLoopThread { self.wake() }
    }

    /// Changes the watched events of a registered descriptor. Called on the loop thread.
    /// - Throws: `RESPError.io(operation: "epoll_ctl(MOD)", …)` (ENOMEM; ENOENT if `fd` is not registered).
    func modify(fd: Int32, events: UInt32, endpoint: String) throws(RESPError) {
        guard let id = self.state.withLock({ $0.ids[fd] }) else {
            throw .io(operation: "epoll_ctl(MOD)", endpoint: endpoint, errno: ENOENT)
        }
        let code = self.control(EPOLL_CTL_MOD, fd: fd, events: events, id: id)
        if code != 0 { throw .io(operation: "epoll_ctl(MOD)", endpoint: endpoint, errno: code) }
    }

    /// Stops watching `fd` (before it is closed). Called on the loop thread.
    func deregister(fd: Int32) {
        let registered = self.state.withLock { state in
            guard let id = state.ids.removeValue(forKey: fd) else { return false }
            state.handlers.removeValue(forKey: id)
            state.generation += 1
            return true
        }
        // A failure here (EBADF, ENOENT) leaves nothing watched: the caller closes `fd` next, which removes it
        // from the set anyway, and its handler is gone from `handlers`.
        if registered { _ = self.control(EPOLL_CTL_DEL, fd: fd, events: 0, id: 0) }
    }

    /// One epoll_ctl(2) call; returns 0 or the errno (EBADF, EEXIST, EINVAL, ELOOP, ENOENT, ENOMEM, ENOSPC,
    /// EPERM — all reported to the caller, none retried).
    private func control(_ operation: Int32, fd: Int32, events: UInt32, id: UInt64) -> Int32 {
        var event = epoll_event()
        event.events = events
        event.data.u64 = id
        return epoll_ctl(self.epollFD, operation, fd, &event) == 0 ? 0 : errno
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
        var one: UInt64 = 1
        _ = Glibc.write(self.wakeFD, &one, MemoryLayout<UInt64>.size)
    }

    /// The loop body; runs forever on its own thread.
    fileprivate func run() {
        self.loopThread.store(UInt(pthread_self()), ordering: .relaxed)
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        var handlers: [UInt64: any EventLoopHandler] = [:]
        var lastDeadlineCheck: UInt64 = 0
        var generation = -1
        while true {
            let pendingWork = self.state.withLock { state in
                if state.generation != generation {
                    generation = state.generation
                    handlers = state.handlers
                }
                return !state.flushQueue.isEmpty || !state.tasks.isEmpty
            }
            let count = events.withUnsafeMutableBufferPointer { buffer in
                epoll_wait(self.epollFD, buffer.baseAddress, Int32(buffer.count), pendingWork ? 0 : 20)
            }
            // A negative count is EINTR (a signal): nothing is ready, the queues below still run.
            for i in 0..<max(Int(count), 0) {
                let id = events[i].data.u64
                if id == Self.wakeID {
                    var drained: UInt64 = 0
                    _ = Glibc.read(self.wakeFD, &drained, MemoryLayout<UInt64>.size)
                } else if let handler = handlers[id] {
                    handler.handleEvents(events[i].events)
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
                for handler in handlers.values { handler.checkDeadlines(now: now) }
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
