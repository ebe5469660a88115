internal import CEpoll
internal import Glibc
import Synchronization

/// Something registered with a loop's epoll set: a listener or a connection. Touched only on its loop thread.
protocol LoopHandler: AnyObject {
    /// Called on the loop thread with the ready epoll event bits.
    func handleEvents(_ events: UInt32, runner: LoopRunner)
    /// Called on the loop thread when the loop shuts down; must close the file descriptor.
    func closeForShutdown(runner: LoopRunner)
    /// Called about every `LoopRunner.tickInterval` (keepalive and idle checks).
    func tick(now: ContinuousClock.Instant, runner: LoopRunner)
}

extension LoopHandler {
    func tick(now: ContinuousClock.Instant, runner: LoopRunner) {}
}

/// One event-loop thread: an epoll set plus an eventfd for wake-ups. Work from other threads is handed in as jobs
/// that run on the loop thread with access to its ``LoopRunner`` (the thread-confined state).
final class EventLoop: Sendable {
    private struct Inbox {
        var jobs: [@Sendable (LoopRunner) -> Void] = []
        var signalled = false
        var stopped = false
    }

    let epollFD: Int32
    let wakeFD: Int32
    let index: Int
    private let inbox = Mutex(Inbox())

    init(index: Int) throws(GRPCWireError) {
        self.index = index
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

    /// Runs `job` on the loop thread soon. Jobs submitted after the loop stopped are dropped.
    func execute(_ job: @escaping @Sendable (LoopRunner) -> Void) {
        let mustSignal = self.inbox.withLock { inbox -> Bool in
            guard !inbox.stopped else { return false }
            inbox.jobs.append(job)
            if inbox.signalled { return false }
            inbox.signalled = true
            return true
        }
        if mustSignal {
            var one: UInt64 = 1
            _ = write(self.wakeFD, &one, 8)
        }
    }

    /// Takes pending jobs (loop thread only).
    fileprivate func takeJobs() -> (jobs: [@Sendable (LoopRunner) -> Void], stopped: Bool) {
        var drained: UInt64 = 0
        _ = read(self.wakeFD, &drained, 8)
        return self.inbox.withLock { inbox in
            let jobs = inbox.jobs
            inbox.jobs = []
            inbox.signalled = false
            return (jobs, inbox.stopped)
        }
    }

    /// Asks the loop thread to close everything and exit.
    func stop() {
        self.inbox.withLock { $0.stopped = true }
        var one: UInt64 = 1
        _ = write(self.wakeFD, &one, 8)
    }

    /// Starts the thread. The runner lives on that thread until `stop()`.
    func startThread() throws(GRPCWireError) {
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

private final class ThreadStart {
    let loop: EventLoop
    init(loop: EventLoop) { self.loop = loop }
}

private func eventLoopThreadEntry(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let arg else { return nil }
    let start = Unmanaged<ThreadStart>.fromOpaque(arg).takeRetainedValue()
    let runner = LoopRunner(loop: start.loop)
    runner.run()
    return nil
}

/// The thread-confined half of an event loop: registered handlers by id. Only ever used on its loop thread.
final class LoopRunner {
    let loop: EventLoop
    private var handlers: [UInt64: any LoopHandler] = [:]
    private var nextID: UInt64 = 1
    /// One receive buffer shared by all connections of this loop (reads are handled one at a time).
    var readBuffer = [UInt8](repeating: 0, count: 1 << 20)

    init(loop: EventLoop) { self.loop = loop }

    /// Registers `fd` with `events`; returns the handler id (also the epoll user data).
    func register(fd: Int32, events: UInt32, handler: any LoopHandler) throws(GRPCWireError) -> UInt64 {
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
    func attach(_ handler: any LoopHandler) -> UInt64 {
        let id = self.nextID
        self.nextID += 1
        self.handlers[id] = handler
        return id
    }

    /// Forgets an attached object.
    func detach(_ id: UInt64) { self.handlers[id] = nil }

    /// Changes the interest set of a registered descriptor.
    func modify(fd: Int32, id: UInt64, events: UInt32) {
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = id
        _ = epoll_ctl(self.loop.epollFD, EPOLL_CTL_MOD, fd, &ev)
    }

    /// Removes a descriptor (call before closing it).
    func unregister(fd: Int32, id: UInt64) {
        _ = epoll_ctl(self.loop.epollFD, EPOLL_CTL_DEL, fd, nil)
        self.handlers[id] = nil
    }

    /// The handler registered under `id`, if still present.
    func handler(_ id: UInt64) -> (any LoopHandler)? { self.handlers[id] }

    /// How often handlers get `tick` (keepalive resolution).
    static let tickInterval: Duration = .milliseconds(50)

    func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 128)
        var nextTick = ContinuousClock.now.advanced(by: Self.tickInterval)
        while true {
            let n = events.withUnsafeMutableBufferPointer { buf in
                epoll_wait(self.loop.epollFD, buf.baseAddress, Int32(buf.count), 50)
            }
            let now = ContinuousClock.now
            if now >= nextTick {
                nextTick = now.advanced(by: Self.tickInterval)
                for handler in Array(self.handlers.values) { handler.tick(now: now, runner: self) }
            }
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            var stop = false
            for i in 0..<Int(n) {
                let id = events[i].data.u64
                if id == 0 {
                    let (jobs, stopped) = self.loop.takeJobs()
                    for job in jobs { job(self) }
                    if stopped { stop = true }
                } else if let handler = self.handlers[id] {
                    handler.handleEvents(events[i].events, runner: self)
                }
            }
            if stop { break }
        }
        for handler in self.handlers.values { handler.closeForShutdown(runner: self) }
        self.handlers = [:]
    }
}

/// A group of event loops; connections are spread round-robin.
final class EventLoopGroup: Sendable {
    let loops: [EventLoop]
    private let next = Atomic<Int>(0)

    init(count: Int) throws(GRPCWireError) {
        // A peer that closes while we write must not kill the process: writes report EPIPE instead
        // (plain sockets also use MSG_NOSIGNAL; OpenSSL writes through write(2)).
        signal(SIGPIPE, SIG_IGN)
        var loops: [EventLoop] = []
        for i in 0..<max(1, count) {
            let loop = try EventLoop(index: i)
            try loop.startThread()
            loops.append(loop)
        }
        self.loops = loops
    }

    func nextLoop() -> EventLoop {
        let i = self.next.wrappingAdd(1, ordering: .relaxed).oldValue
        return self.loops[i % self.loops.count]
    }

    func stop() {
        for loop in self.loops { loop.stop() }
    }

    /// Number of online processors (default loop count).
    static var defaultCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
