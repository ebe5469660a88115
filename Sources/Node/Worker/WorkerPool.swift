public import ArrowIPC
internal import Glibc
internal import GRPCWire
internal import Synchronization

/// What a worker pool claims and how it processes (the ValkeyFlight contract (CONTRACT.md) §1 worker options, §3 semantics).
public struct WorkerConfiguration: Sendable {
    /// Queues claimed from, fairly (each slot starts its round at the next queue).
    public var queues: [String] = ["default"]
    /// Batches processed at once.
    public var concurrency = 1
    /// Lease length; the lease is extended every third of it while a batch is processed.
    public var lease: Duration = .seconds(30)
    /// Attempts and retry backoff.
    public var policy = RetryPolicy()
    /// Longest one attempt may take (nil: no limit).
    public var timeout: Duration?
    /// The name recorded as the batch's `worker` (slot numbers are appended).
    public var name: String
    /// `--result-compression`: body codec of results ValkeyFlight itself writes (passthrough and Swift
    /// ``BatchProcessor`` outputs); `--exec` results are stored as the child wrote them. nil: as produced.
    public var resultCompression: CompressionCodec?

    public init(name: String = WorkerConfiguration.defaultName()) {
        self.name = name
    }

    /// `HOST:PID`.
    public static func defaultName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "worker"
        return "\(host):\(getpid())"
    }
}

/// A pool of worker slots: each claims a batch (blocking on the queues' wake lists while there is none), fetches
/// its input, runs the processor while extending the lease, stores the result on the input's node and completes
/// it — or fails the attempt (retry with backoff, or failed after the last attempt). ``run()`` runs until
/// ``stopClaiming()``; in-flight batches then finish, and whatever is still running when the task running
/// ``run()`` is cancelled is released back to pending (not failed).
public final class WorkerPool: Sendable {
    public let configuration: WorkerConfiguration
    let coordinator: Coordinator
    let data: any BatchDataAccess
    let processor: any BatchProcessor
    let log: NodeLogger
    /// Where attempts, waits and busy slots are recorded (`/metrics`); nil records nothing.
    let metrics: NodeMetrics?
    private let state = Mutex(State())

    private struct State {
        var stopping = false
        var busy = 0
        /// Idle slots' waits for work, cancelled when claiming stops.
        var idleWaits: [Int: Task<Bool, any Error>] = [:]
    }

    package init(coordinator: Coordinator, data: any BatchDataAccess, processor: any BatchProcessor,
                 configuration: WorkerConfiguration, log: NodeLogger, metrics: NodeMetrics? = nil) {
        self.metrics = metrics
        self.coordinator = coordinator
        self.data = data
        self.processor = processor
        self.configuration = configuration
        self.log = log
    }

    public convenience init(coordinator: Coordinator, data: any BatchDataAccess, processor: any BatchProcessor,
                            configuration: WorkerConfiguration) {
        self.init(coordinator: coordinator, data: data, processor: processor, configuration: configuration, log: .discard)
    }

    /// Slots processing a batch right now.
    public var busy: Int { self.state.withLock { $0.busy } }

    /// Runs every slot until claiming stops and the slots are done.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for slot in 0..<max(1, self.configuration.concurrency) {
                group.addTask { await self.slotLoop(slot) }
            }
        }
    }

    /// Stops claiming: idle slots return at once, busy ones after their current batch.
    public func stopClaiming() {
        let waits = self.state.withLock { state in
            state.stopping = true
            return Array(state.idleWaits.values)
        }
        for wait in waits { wait.cancel() }
    }

    private var stopping: Bool { self.state.withLock { $0.stopping } }

    private func slotLoop(_ slot: Int) async {
        let worker = self.configuration.concurrency > 1 ? "\(self.configuration.name)/\(slot)" : self.configuration.name
        var nextQueue = slot % max(1, self.configuration.queues.count)
        var failures = 0
        while !self.stopping, !Task.isCancelled {
            do {
                if let claim = try await self.claimOne(worker: worker, startingAt: &nextQueue) {
                    failures = 0
                    self.state.withLock { $0.busy += 1 }
                    if let metrics = self.metrics {
                        metrics.workerStarted()
                        metrics.queue(claim.key.queue).wait.observe(.milliseconds(claim.waitedMilliseconds))
                    }
                    await self.process(claim, worker: worker)
                    self.metrics?.workerFinished()
                    self.state.withLock { $0.busy -= 1 }
                    continue
                }
                failures = 0
                try await self.waitForWork(slot)
            } catch {
                if self.stopping || Task.isCancelled { break }
                failures += 1
                if failures == 1 || failures % 50 == 0 {
                    self.log.warning("worker cannot reach Valkey; retrying", ["worker": worker, "error": "\(error)"])
                }
                try? await Task.sleep(for: min(.milliseconds(50) * (1 << min(failures, 5)), .seconds(1)))
            }
        }
    }

    /// One claim from the first queue, in round-robin order, that has a ready batch.
    private func claimOne(worker: String, startingAt next: inout Int) async throws -> BatchClaim? {
        let queues = self.configuration.queues
        for offset in 0..<queues.count {
            let queue = queues[(next + offset) % queues.count]
            let claims = try await self.coordinator.claim(queue: queue, worker: worker, limit: 1,
                                                          lease: self.configuration.lease, policy: self.configuration.policy)
            if let claim = claims.first {
                next = (next + offset + 1) % queues.count
                return claim
            }
        }
        return nil
    }

    /// Blocks on the queues' wake lists (at most a second per round), unless claiming stops.
    private func waitForWork(_ slot: Int) async throws {
        let wait = Task { try await self.coordinator.waitForWork(queues: self.configuration.queues, timeout: .seconds(1)) }
        let registered = self.state.withLock { state in
            guard !state.stopping else { return false }
            state.idleWaits[slot] = wait
            return true
        }
        guard registered else {
            wait.cancel()
            return
        }
        defer { _ = self.state.withLock { $0.idleWaits.removeValue(forKey: slot) } }
        _ = try await withTaskCancellationHandler {
            try await wait.value
        } onCancel: {
            wait.cancel()
        }
    }

    // MARK: One attempt

    private enum AttemptEnd: Sendable {
        case completed(FenceResult), leaseLost, timedOut(Duration)
    }

    private func process(_ claim: BatchClaim, worker: String) async {
        let started = ContinuousClock.now
        do {
            let end = try await withThrowingTaskGroup(of: AttemptEnd.self) { group in
                group.addTask { .completed(try await self.attempt(claim)) }
                group.addTask {
                    try await self.keepLease(claim)
                    return .leaseLost
                }
                if let timeout = self.configuration.timeout {
                    group.addTask {
                        try await Task.sleep(for: timeout)
                        return .timedOut(timeout)
                    }
                }
                defer { group.cancelAll() }
                guard let first = try await group.next() else { return AttemptEnd.leaseLost }
                return first
            }
            let took = ContinuousClock.now - started
            switch end {
            case .completed(.accepted):
                self.transition(claim, worker, "completed", took)
            case .completed:
                let outcome = await self.lostOutcome(claim)
                self.transition(claim, worker, outcome, took, error: Self.lostError(outcome,
                    cancelled: "the batch was cancelled while it was processed",
                    lost: "completion refused: the token is no longer current"))
            case .leaseLost:
                let outcome = await self.lostOutcome(claim)
                self.transition(claim, worker, outcome, took, error: Self.lostError(outcome,
                    cancelled: "the batch was cancelled while it was processed; the attempt stopped",
                    lost: "the lease was taken away; the attempt stopped"))
            case let .timedOut(timeout):
                await self.fail(claim, worker, NodeError.unavailable("processing timed out after \(timeout)"), took)
            }
        } catch {
            let took = ContinuousClock.now - started
            if Task.isCancelled {
                await self.release(claim, worker, took)
            } else {
                await self.fail(claim, worker, error, took)
            }
        }
    }

    /// The error logged with a `lostOutcome`: none when this attempt's completion went through after all.
    private static func lostError(_ outcome: String, cancelled: String, lost: String) -> String? {
        switch outcome {
        case "completed": nil
        case "cancelled": cancelled
        default: lost
        }
    }

    /// What became of an attempt that lost its token (one status read, only on this rare path):
    /// - `completed` when the batch is completed and no later attempt was claimed: this attempt's own completion
    ///   went through although the slot did not hear of it in time (the lease keeper gave up first, or the reply or
    ///   its WAIT was lost in a failover); only the token of this attempt could have completed it;
    /// - `cancelled` when the batch was cancelled;
    /// - else `lease_lost`.
    ///
    /// Cut off from Valkey the read may go unanswered for the whole command timeout: the slot (its processor already
    /// stopped) waits at most one lease (at most 5 s) for it, then calls it `lease_lost`. A shorter bound (1 s)
    /// misnamed cancellations on a loaded machine.
    private func lostOutcome(_ claim: BatchClaim) async -> String {
        let limit = min(self.configuration.lease, .seconds(5))
        let answer = try? await Self.uncancelled {
            try await withTimeLimit(limit) { try await self.coordinator.status(claim.key) }
        }
        let status: BatchStatus? = answer.flatMap { $0 }.flatMap { $0 }
        if status?.state == .completed, status?.attempts == claim.attempt { return "completed" }
        return status?.state == .cancelled ? "cancelled" : "lease_lost"
    }

    /// Fetch, process, store the result, complete.
    private func attempt(_ claim: BatchClaim) async throws -> FenceResult {
        let input = try await self.data.fetch(claim)
        var output = try await self.processor.process(input)
        if let codec = self.configuration.resultCompression, !(self.processor is ExecProcessor) {
            output = try output.compressed(with: codec)
        }
        let resultKey = try await self.data.storeResult(output, for: claim)
        return try await self.coordinator.complete(claim, resultKey: resultKey)
    }

    /// Extends the lease every third of it; returns when the lease is lost (stale token, or no successful extension
    /// before the lease ran out). An extension still unanswered when the lease runs out counts as lost: cut off
    /// from Valkey, a request may go unanswered for the whole command timeout, longer than the lease.
    private func keepLease(_ claim: BatchClaim) async throws {
        let lease = self.configuration.lease
        var lastExtended = ContinuousClock.now
        while true {
            try await Task.sleep(for: lease / 3)
            let sent = ContinuousClock.now
            let remaining = lastExtended + lease - sent
            guard remaining > .zero else { return }
            do {
                let answer = try await withTimeLimit(remaining) { try await self.coordinator.extend(claim, lease: lease) }
                switch answer {
                case .accepted?: lastExtended = sent
                case .stale?, .notFound?, nil: return
                }
            } catch let error as CancellationError {
                throw error
            } catch {
                if ContinuousClock.now - lastExtended >= lease { return }
            }
        }
    }

    private func fail(_ claim: BatchClaim, _ worker: String, _ error: any Error, _ took: Duration) async {
        if case NodeError.staleToken = error {
            self.transition(claim, worker, "lease_lost", took, error: "\(error)")
            return
        }
        let permanent: Bool
        if case NodeError.notFound = error { permanent = true } else { permanent = false }
        let message = Self.describe(error)
        let delay = self.configuration.policy.delay(afterAttempt: claim.attempt)
        do {
            let outcome = try await Self.uncancelled {
                try await self.coordinator.fail(claim, error: message, retryDelay: delay, permanent: permanent)
            }
            switch outcome {
            case .retryScheduled: self.transition(claim, worker, "retry", took, error: message)
            case .failed: self.transition(claim, worker, "failed", took, error: message)
            case .stale, .notFound:
                let outcome = await self.lostOutcome(claim)
                self.transition(claim, worker, outcome == "completed" ? outcome : "lease_lost", took,
                                error: outcome == "completed" ? nil : message)
            }
        } catch {
            self.log.error("could not record a failed attempt; its lease will expire and be reaped",
                           ["key": claim.key.description, "error": "\(error)"])
        }
    }

    private func release(_ claim: BatchClaim, _ worker: String, _ took: Duration) async {
        do {
            _ = try await Self.uncancelled { try await self.coordinator.release(claim) }
            self.transition(claim, worker, "released", took)
        } catch {
            self.log.error("could not release a batch at shutdown; its lease will expire and be reaped",
                           ["key": claim.key.description, "error": "\(error)"])
        }
    }

    /// Runs `body` in a task that is not cancelled with the caller (bookkeeping must reach Valkey at shutdown).
    static func uncancelled<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Task { try await body() }.value
    }

    /// The `last_error` text of an error: one line, at most 4 KiB.
    static func describe(_ error: any Error) -> String {
        let text: String
        if let status = error as? GRPCStatus {
            text = "\(status.code): \(status.message)"
        } else {
            text = "\(error)"
        }
        let line = text.unicodeScalars.prefix(4096).map { $0 == "\n" || $0 == "\r" ? " " : Character($0) }
        return String(line)
    }

    private func transition(_ claim: BatchClaim, _ worker: String, _ outcome: String, _ took: Duration, error: String? = nil) {
        if let metrics = self.metrics, outcome != "released" {
            let queue = metrics.queue(claim.key.queue)
            queue.processing.observe(took)
            queue.attemptEnded(outcome)
        }
        guard self.log.level <= .info else { return }
        let duration = NodeLogger.milliseconds(took)
        if let error {
            self.log.info("batch attempt ended", ["key": claim.key.description, "queue": claim.key.queue,
                                                  "attempt": String(claim.attempt), "worker": worker,
                                                  "duration": duration, "outcome": outcome, "error": error])
        } else {
            self.log.info("batch attempt ended", ["key": claim.key.description, "queue": claim.key.queue,
                                                  "attempt": String(claim.attempt), "worker": worker,
                                                  "duration": duration, "outcome": outcome])
        }
    }
}

/// `body`'s value, or nil when it has not returned within `limit` (it is then cancelled; the wait does not outlast
/// `limit` by more than the body takes to notice the cancellation).
func withTimeLimit<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { return nil }
        return first
    }
}
