import Synchronization

/// The lock-protected meeting point between one HTTP/2 stream (on its loop thread) and the Swift task of its call.
///
/// Inbound: the loop appends complete messages; the task takes them (suspending when none). Outbound: the task
/// appends byte slices (suspending while more than `outboundLimit` bytes are unsent); the loop takes them for DATA
/// frames. Every change the loop must act on is signalled through `wake`, coalesced to one pending job.
final class StreamChannel: Sendable {
    struct State {
        var inbound: [[UInt8]] = []
        var inboundHead = 0
        var inboundBytes = 0
        var inboundFinished = false
        var inboundWaiter: CheckedContinuation<Result<[UInt8]?, GRPCStatus>, Never>?

        var outbound: [ArraySlice<UInt8>] = []
        var outboundHead = 0
        var outboundBytes = 0
        var outboundWaiter: CheckedContinuation<Result<Void, GRPCStatus>, Never>?
        /// The sending side is complete (client: end of requests; server: trailers set).
        var outboundFinished = false

        /// Server: explicit initial metadata to send; trailers.
        var initialMetadata: GRPCMetadata?
        var headersRequested = false
        var trailers: (GRPCStatus, GRPCMetadata)?

        /// Client: response headers and final status.
        var responseHeaders: GRPCMetadata?
        var headersWaiters: [CheckedContinuation<GRPCMetadata, Never>] = []
        var finalStatus: (GRPCStatus, GRPCMetadata)?
        var statusWaiters: [CheckedContinuation<(GRPCStatus, GRPCMetadata), Never>] = []

        /// Set when the call ended abnormally (reset, deadline, connection loss): waiters fail with it.
        var terminal: GRPCStatus?
        var wakePending = false
        var cancelRequested = false
        var task: Task<Void, Never>?
        var timer: Task<Void, Never>?
    }

    let state: Mutex<State>
    let outboundLimit: Int
    let inboundLimit: Int
    private let wakeLoop: @Sendable () -> Void

    init(outboundLimit: Int, inboundLimit: Int, wake: @escaping @Sendable () -> Void) {
        self.state = Mutex(State())
        self.outboundLimit = outboundLimit
        self.inboundLimit = inboundLimit
        self.wakeLoop = wake
    }

    /// Schedules the loop job unless one is pending. Call outside the lock.
    func wake() {
        let need = self.state.withLock { s -> Bool in
            if s.wakePending { return false }
            s.wakePending = true
            return true
        }
        if need { self.wakeLoop() }
    }

    // MARK: - Task side

    /// Takes the next inbound message; nil at the end of the stream.
    /// - Throws: the terminal status when the call was cancelled, reset or failed.
    func receive() async throws(GRPCStatus) -> [UInt8]? {
        let step = self.state.withLock { s -> Step in
            if let t = s.terminal { return .failed(t) }
            if s.inboundHead < s.inbound.count { return Self.pop(&s, limit: self.inboundLimit) }
            if s.inboundFinished { return .value(nil, false) }
            return .wait
        }
        switch step {
        case .value(let m, let mustWake):
            if mustWake { self.wake() }
            return m
        case .failed(let status): throw status
        case .wait: break
        }
        let result: Result<[UInt8]?, GRPCStatus> = await withTaskCancellationHandler {
            await withCheckedContinuation { cont in
                enum Now {
                    case resume(Result<[UInt8]?, GRPCStatus>, Bool)
                    case parked
                }
                let now = self.state.withLock { s -> Now in
                    if let t = s.terminal { return .resume(.failure(t), false) }
                    // Read under the lock: a cancellation either sees the parked waiter or is seen here.
                    if Task.isCancelled { return .resume(.failure(Self.taskCancelled), false) }
                    if s.inboundHead < s.inbound.count {
                        switch Self.pop(&s, limit: self.inboundLimit) {
                        case .value(let m, let w): return .resume(.success(m), w)
                        default: return .resume(.success(nil), false)
                        }
                    }
                    if s.inboundFinished { return .resume(.success(nil), false) }
                    s.inboundWaiter = cont
                    return .parked
                }
                if case .resume(let r, let w) = now {
                    if w { self.wake() }
                    cont.resume(returning: r)
                }
            }
        } onCancel: {
            // The waiting task was cancelled: it stops waiting (the stream itself is left to its owner).
            let waiter = self.state.withLock { s -> CheckedContinuation<Result<[UInt8]?, GRPCStatus>, Never>? in
                let w = s.inboundWaiter
                s.inboundWaiter = nil
                return w
            }
            waiter?.resume(returning: .failure(Self.taskCancelled))
        }
        return try result.get()
    }

    static let taskCancelled = GRPCStatus(.cancelled, "the waiting task was cancelled")

    private static func pop(_ s: inout State, limit: Int) -> Step {
        let m = s.inbound[s.inboundHead]
        s.inbound[s.inboundHead] = []
        s.inboundHead += 1
        if s.inboundHead == s.inbound.count {
            s.inbound.removeAll(keepingCapacity: true)
            s.inboundHead = 0
        }
        let before = s.inboundBytes
        s.inboundBytes -= m.count
        return .value(m, before >= limit && s.inboundBytes < limit)
    }

    enum Step {
        case value([UInt8]?, Bool)
        case failed(GRPCStatus)
        case wait
    }

    /// Client: publishes the response headers.
    func setResponseHeaders(_ metadata: GRPCMetadata) {
        let waiters = self.state.withLock { s -> [CheckedContinuation<GRPCMetadata, Never>] in
            guard s.responseHeaders == nil else { return [] }
            s.responseHeaders = metadata
            let w = s.headersWaiters
            s.headersWaiters = []
            return w
        }
        for w in waiters { w.resume(returning: metadata) }
    }

    /// Client: records the final status (first one wins) and releases status and header waiters.
    func setFinalStatus(_ status: GRPCStatus, _ metadata: GRPCMetadata) {
        let (sw, hw, final, headers, timer, ow) = self.state.withLock { s in
            if s.finalStatus == nil { s.finalStatus = (status, metadata) }
            // Nothing more will be sent on this stream: release a writer waiting for room.
            s.outbound = []
            s.outboundHead = 0
            s.outboundBytes = 0
            let ow = s.outboundWaiter
            s.outboundWaiter = nil
            if s.responseHeaders == nil { s.responseHeaders = GRPCMetadata() }
            let sw = s.statusWaiters
            let hw = s.headersWaiters
            s.statusWaiters = []
            s.headersWaiters = []
            return (sw, hw, s.finalStatus ?? (status, metadata), s.responseHeaders ?? GRPCMetadata(), s.timer, ow)
        }
        timer?.cancel()
        ow?.resume(returning: .success(()))
        for w in sw { w.resume(returning: final) }
        for w in hw { w.resume(returning: headers) }
    }

    /// Sets the final status unless one is set (server); the sending side closes. Returns whether it was set.
    @discardableResult
    func setTrailers(_ status: GRPCStatus, _ metadata: GRPCMetadata) -> Bool {
        let (set, timer) = self.state.withLock { s -> (Bool, Task<Void, Never>?) in
            guard s.trailers == nil else { return (false, nil) }
            s.trailers = (status, metadata)
            s.outboundFinished = true
            return (true, s.timer)
        }
        timer?.cancel()
        if set { self.wake() }
        return set
    }

    /// Queues slices for sending; suspends while the stream has more than `outboundLimit` unsent bytes.
    /// - Throws: the terminal status when the call ended, or INTERNAL when the sending side was already closed.
    func send(_ parts: [ArraySlice<UInt8>], byteCount: Int, last: Bool = false) async throws(GRPCStatus) {
        let outcome = self.state.withLock { s -> Result<Bool, GRPCStatus> in
            if let t = s.terminal { return .failure(t) }
            // Client call already answered: an OK end drops further requests, an error end reports itself.
            if let (status, _) = s.finalStatus { return status.code == .ok ? .success(false) : .failure(status) }
            if s.outboundFinished { return .failure(GRPCStatus(.internal, "send after the stream was closed")) }
            for p in parts where !p.isEmpty { s.outbound.append(p) }
            s.outboundBytes += byteCount
            if last { s.outboundFinished = true }
            return .success(s.outboundBytes > self.outboundLimit)
        }
        let mustWait = try outcome.get()
        self.wake()
        guard mustWait else { return }
        let result: Result<Void, GRPCStatus> = await withTaskCancellationHandler {
            await withCheckedContinuation { cont in
                let now = self.state.withLock { s -> Result<Void, GRPCStatus>? in
                    if let t = s.terminal { return .failure(t) }
                    if s.outboundBytes <= self.outboundLimit { return .success(()) }
                    if Task.isCancelled { return .failure(Self.taskCancelled) }
                    s.outboundWaiter = cont
                    return nil
                }
                if let now { cont.resume(returning: now) }
            }
        } onCancel: {
            let waiter = self.state.withLock { s -> CheckedContinuation<Result<Void, GRPCStatus>, Never>? in
                let w = s.outboundWaiter
                s.outboundWaiter = nil
                return w
            }
            waiter?.resume(returning: .failure(Self.taskCancelled))
        }
        try result.get()
    }

    // MARK: - Loop side

    /// Appends a received message (loop thread).
    func deliver(_ message: [UInt8]) {
        let waiter = self.state.withLock { s -> CheckedContinuation<Result<[UInt8]?, GRPCStatus>, Never>? in
            if s.terminal != nil { return nil }
            if let w = s.inboundWaiter {
                s.inboundWaiter = nil
                return w
            }
            s.inbound.append(message)
            s.inboundBytes += message.count
            return nil
        }
        waiter?.resume(returning: .success(message))
    }

    /// Marks the end of inbound messages (loop thread).
    func finishInbound() {
        let waiter = self.state.withLock { s -> CheckedContinuation<Result<[UInt8]?, GRPCStatus>, Never>? in
            s.inboundFinished = true
            let w = s.inboundWaiter
            s.inboundWaiter = nil
            return w
        }
        waiter?.resume(returning: .success(nil))
    }

    /// Queued inbound bytes not yet taken by the task.
    var queuedInboundBytes: Int { self.state.withLock { $0.inboundBytes } }

    /// Fails the call: waiters resume with `status`, the task is cancelled (unless `cancelTask` is false).
    func fail(_ status: GRPCStatus, cancelTask: Bool) {
        let (iw, ow, task, timer) = self.state.withLock { s in
            if s.terminal == nil { s.terminal = status }
            let iw = s.inboundWaiter
            let ow = s.outboundWaiter
            s.inboundWaiter = nil
            s.outboundWaiter = nil
            s.outbound = []
            s.outboundHead = 0
            s.outboundBytes = 0
            return (iw, ow, cancelTask ? s.task : nil, s.timer)
        }
        iw?.resume(returning: .failure(status))
        ow?.resume(returning: .failure(status))
        task?.cancel()
        timer?.cancel()
    }

    /// Takes up to `max` outbound bytes as slices (loop thread, inside the send-data callback).
    func takeOutbound(_ max: Int, into sink: (ArraySlice<UInt8>) -> Void) {
        var delivered = 0
        let (slices, waiter): ([ArraySlice<UInt8>], CheckedContinuation<Result<Void, GRPCStatus>, Never>?) =
            self.state.withLock { s in
                var left = max
                var taken: [ArraySlice<UInt8>] = []
                while left > 0 && s.outboundHead < s.outbound.count {
                    let head = s.outbound[s.outboundHead]
                    if head.count <= left {
                        taken.append(head)
                        left -= head.count
                        s.outbound[s.outboundHead] = []
                        s.outboundHead += 1
                    } else {
                        taken.append(head.prefix(left))
                        s.outbound[s.outboundHead] = head.dropFirst(left)
                        left = 0
                    }
                }
                if s.outboundHead == s.outbound.count {
                    s.outbound.removeAll(keepingCapacity: true)
                    s.outboundHead = 0
                } else if s.outboundHead > 1024 {
                    s.outbound.removeFirst(s.outboundHead)
                    s.outboundHead = 0
                }
                s.outboundBytes = Swift.max(0, s.outboundBytes - (max - left))
                var w: CheckedContinuation<Result<Void, GRPCStatus>, Never>?
                if s.outboundBytes <= self.outboundLimit, let ow = s.outboundWaiter {
                    s.outboundWaiter = nil
                    w = ow
                }
                return (taken, w)
            }
        for slice in slices {
            delivered += slice.count
            sink(slice)
        }
        // The call failed between nghttp2's read and send callbacks: keep the frame well-formed (the stream is
        // being reset anyway).
        if delivered < max { sink([UInt8](repeating: 0, count: max - delivered)[...]) }
        waiter?.resume(returning: .success(()))
    }
}
