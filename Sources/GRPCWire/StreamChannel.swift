import Synchronization
internal import IOLoop

/// The lock-protected meeting point between one HTTP/2 stream (on its loop thread) and the Swift task of its call.
///
/// Inbound: the loop appends complete messages; the task takes them (suspending when none). Outbound: the task
/// appends byte slices (suspending while more than `outboundLimit` bytes are unsent); the loop takes them for DATA
/// frames. Every change the loop must act on is signalled through `wake`, coalesced to one pending job.
final class StreamChannel: Sendable {
    struct State {
        var inbound: [[UInt8]] = []
        /// Budget bytes charged for each queued inbound message (server streams), parallel to `inbound`.
        var inboundCharges: [Int] = []
        var inboundHead = 0
        /// The loop held back window for this stream: wake it when the task takes a message.
        var windowWaiting = false
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
    /// Server streams: the budgets and admission their received messages are charged to.
    let receiveCharges: ReceiveCharges?
    /// Server streams: the connection's send budget (queued response bytes of all its streams).
    let sendBudget: ByteBudget?
    private let wakeLoop: @Sendable () -> Void

    init(
        outboundLimit: Int, inboundLimit: Int, receiveCharges: ReceiveCharges? = nil, sendBudget: ByteBudget? = nil,
        wake: @escaping @Sendable () -> Void
    ) {
        self.state = Mutex(State())
        self.outboundLimit = outboundLimit
        self.inboundLimit = inboundLimit
        self.receiveCharges = receiveCharges
        self.sendBudget = sendBudget
        self.wakeLoop = wake
    }

    deinit {
        let (messages, charges, unsent) = self.state.withLock { s in
            (Array(s.inbound[s.inboundHead...]), Array(s.inboundCharges[s.inboundHead...]), s.outboundBytes)
        }
        self.releaseDropped(messages, charges)
        self.sendBudget?.release(unsent)
    }

    /// Charges `bytes` of a received message's buffer to the stream's budgets (always granted for client streams).
    func chargeReceived(_ bytes: Int) -> Bool { self.receiveCharges?.tryCharge(bytes) ?? true }

    /// Returns the budget charges and admissions of inbound messages that will never be taken.
    private func releaseDropped(_ messages: [[UInt8]], _ charges: [Int]) {
        guard let rc = self.receiveCharges else { return }
        for (m, c) in zip(messages, charges) { rc.release(charged: c, length: m.count, admitted: true) }
    }

    /// Returns the charge of one message the task took.
    private func releaseTaken(_ length: Int, _ charge: Int) {
        self.receiveCharges?.release(charged: charge, length: length, admitted: true)
    }

    /// Whether the sender may go on: its stream is within its limit and, while the connection's send budget is
    /// exceeded, its own queue is empty (so every stream always makes progress).
    private func sendRoom(_ s: State) -> Bool {
        guard s.outboundBytes <= self.outboundLimit else { return false }
        guard let budget = self.sendBudget, budget.inUse > budget.limit else { return true }
        return s.outboundBytes == 0
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
            if s.inboundFinished { return .value(nil, false, 0) }
            return .wait
        }
        switch step {
        case .value(let m, let mustWake, let charge):
            if let m { self.releaseTaken(m.count, charge) }
            if mustWake { self.wake() }
            return m
        case .failed(let status): throw status
        case .wait: break
        }
        let result: Result<[UInt8]?, GRPCStatus> = await withTaskCancellationHandler {
            await withCheckedContinuation { cont in
                enum Now {
                    case resume(Result<[UInt8]?, GRPCStatus>, Bool, Int)
                    case parked
                }
                let now = self.state.withLock { s -> Now in
                    if let t = s.terminal { return .resume(.failure(t), false, 0) }
                    // Read under the lock: a cancellation either sees the parked waiter or is seen here.
                    if Task.isCancelled { return .resume(.failure(Self.taskCancelled), false, 0) }
                    if s.inboundHead < s.inbound.count {
                        switch Self.pop(&s, limit: self.inboundLimit) {
                        case .value(let m, let w, let c): return .resume(.success(m), w, c)
                        default: return .resume(.success(nil), false, 0)
                        }
                    }
                    if s.inboundFinished { return .resume(.success(nil), false, 0) }
                    s.inboundWaiter = cont
                    return .parked
                }
                if case .resume(let r, let w, let c) = now {
                    if case .success(let m?) = r { self.releaseTaken(m.count, c) }
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
        let charge = s.inboundCharges[s.inboundHead]
        s.inbound[s.inboundHead] = []
        s.inboundHead += 1
        if s.inboundHead == s.inbound.count {
            s.inbound.removeAll(keepingCapacity: true)
            s.inboundCharges.removeAll(keepingCapacity: true)
            s.inboundHead = 0
        }
        let before = s.inboundBytes
        s.inboundBytes -= m.count
        let wake = (before >= limit && s.inboundBytes < limit) || s.windowWaiting
        s.windowWaiting = false
        return .value(m, wake, charge)
    }

    enum Step {
        /// A message (nil: end), whether the loop must be woken, and the budget charge to return.
        case value([UInt8]?, Bool, Int)
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
        let (sw, hw, final, headers, timer, ow, unsent) = self.state.withLock { s in
            if s.finalStatus == nil { s.finalStatus = (status, metadata) }
            // Nothing more will be sent on this stream: release a writer waiting for room.
            let unsent = s.outboundBytes
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
            return (
                sw, hw, s.finalStatus ?? (status, metadata), s.responseHeaders ?? GRPCMetadata(), s.timer, ow, unsent
            )
        }
        self.sendBudget?.release(unsent)
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
            self.sendBudget?.charge(byteCount)
            if last { s.outboundFinished = true }
            return .success(!self.sendRoom(s))
        }
        let mustWait = try outcome.get()
        self.wake()
        guard mustWait else { return }
        let result: Result<Void, GRPCStatus> = await withTaskCancellationHandler {
            await withCheckedContinuation { cont in
                let now = self.state.withLock { s -> Result<Void, GRPCStatus>? in
                    if let t = s.terminal { return .failure(t) }
                    if self.sendRoom(s) { return .success(()) }
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

    /// Appends a received message (loop thread) with the budget bytes charged for it (returned when the task
    /// takes it or it is dropped).
    func deliver(_ message: [UInt8], charge: Int = 0) {
        enum Outcome {
            case handed(CheckedContinuation<Result<[UInt8]?, GRPCStatus>, Never>)
            case queued
            case dropped
        }
        let outcome = self.state.withLock { s -> Outcome in
            if s.terminal != nil { return .dropped }
            if let w = s.inboundWaiter {
                s.inboundWaiter = nil
                return .handed(w)
            }
            s.inbound.append(message)
            s.inboundCharges.append(charge)
            s.inboundBytes += message.count
            return .queued
        }
        switch outcome {
        case .handed(let w):
            self.releaseTaken(message.count, charge)
            w.resume(returning: .success(message))
        case .dropped: self.releaseDropped([message], [charge])
        case .queued: break
        }
    }

    /// Loop side: whether received bytes may reopen the window now (`partial` bytes of an incomplete message are
    /// held besides the queued ones). When not, the task's next `receive` wakes the loop.
    func windowMayReopen(partial: Int) -> Bool {
        self.state.withLock { s in
            let held = s.inboundBytes &+ partial
            if s.inboundBytes == 0 || held < self.inboundLimit { return true }
            s.windowWaiting = true
            return false
        }
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
        let (iw, ow, task, timer, messages, charges, unsent) = self.state.withLock { s in
            if s.terminal == nil { s.terminal = status }
            let iw = s.inboundWaiter
            let ow = s.outboundWaiter
            s.inboundWaiter = nil
            s.outboundWaiter = nil
            let unsent = s.outboundBytes
            s.outbound = []
            s.outboundHead = 0
            s.outboundBytes = 0
            // Queued requests will never be taken (receive reports the terminal status first).
            let messages = Array(s.inbound[s.inboundHead...])
            let charges = Array(s.inboundCharges[s.inboundHead...])
            s.inbound = []
            s.inboundCharges = []
            s.inboundHead = 0
            s.inboundBytes = 0
            return (iw, ow, cancelTask ? s.task : nil, s.timer, messages, charges, unsent)
        }
        self.releaseDropped(messages, charges)
        self.sendBudget?.release(unsent)
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
                let sent = Swift.min(s.outboundBytes, max - left)
                s.outboundBytes -= sent
                self.sendBudget?.release(sent)
                var w: CheckedContinuation<Result<Void, GRPCStatus>, Never>?
                if self.sendRoom(s), let ow = s.outboundWaiter {
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
