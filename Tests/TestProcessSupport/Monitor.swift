internal import Glibc

/// A value guarded by a pthread mutex with a condition variable, for state that both async tasks (through
/// continuations) and blocked threads wait on. Waiting on the condition blocks a thread: only the helper threads
/// of this library and callers of the blocking APIs do that, never an async path.
///
/// `@unchecked Sendable`: `value` is read and written only between `pthread_mutex_lock` and `unlock` of `mutex`
/// (inside ``withLock(_:)`` and ``wait(_:until:)``, which is only called from inside it).
final class Monitor<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var value: Value

    init(_ value: Value) {
        self.value = value
        self.mutex = .allocate(capacity: 1)
        self.mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(self.mutex, nil)
        self.condition = .allocate(capacity: 1)
        self.condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(self.condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(self.condition)
        pthread_mutex_destroy(self.mutex)
        self.condition.deallocate()
        self.mutex.deallocate()
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }

    /// Wakes every thread blocked in ``blockingWait(until:_:)``.
    func broadcast() {
        pthread_cond_broadcast(self.condition)
    }

    /// Blocks the calling thread until `check` returns a value (re-checked after each ``broadcast()``) or
    /// `deadline` passed; then returns `check`'s last answer.
    func blockingWait<R>(until deadline: ContinuousClock.Instant, _ check: (inout Value) -> R?) -> R? {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        while true {
            if let result = check(&self.value) { return result }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return nil }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            // At most one second per wait: bounded even if the clocks disagree.
            let (seconds, attoseconds) = min(left, .seconds(1)).components
            var nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
            var wholeSeconds = Int(now.tv_sec) + Int(seconds)
            if nanoseconds >= 1_000_000_000 {
                nanoseconds -= 1_000_000_000
                wholeSeconds += 1
            }
            var until = timespec(tv_sec: wholeSeconds, tv_nsec: nanoseconds)
            _ = pthread_cond_timedwait(self.condition, self.mutex, &until)
        }
    }
}

/// Threads of our own for blocking work (a wait on a child, a poll on its pipes), never the cooperative pool.
public enum HelperThread {
    /// Starts a detached thread running `body`; false if the system refused (errno is set).
    @discardableResult
    public static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                guard let context else { return nil }
                Unmanaged<Body>.fromOpaque(context).takeRetainedValue().body()
                return nil
            }, box)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(box).release()
            errno = result
            return false
        }
        pthread_detach(thread)
        return true
    }

    /// Runs blocking `body` on a thread of its own and resumes the caller with its result, so an async caller
    /// never blocks a thread of the cooperative pool with it.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let started = Self.start { continuation.resume(with: Result { try body() }) }
            if !started { continuation.resume(throwing: ChildProcessError.threadFailed(errno: errno)) }
        }
    }

    /// ``run(_:)`` for a body that cannot throw; if no thread can be created, `body` runs on the caller's.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let started = Self.start { continuation.resume(returning: body()) }
            if !started { continuation.resume(returning: body()) }
        }
    }

    private final class Body: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}
