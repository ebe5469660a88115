import RESP
import Synchronization

/// What `runCoordinatorBenchmark` measured.
public struct CoordinatorBenchmarkResult: Sendable {
    /// Batches registered, claimed and completed.
    public var batches: Int
    /// Concurrent tasks used.
    public var concurrency: Int
    /// Sub-queues of the benchmark's queue (1: a plain queue).
    public var shards: Int = 1
    /// Wall time of the measured phase (cleanup excluded).
    public var elapsed: Duration
    /// `batches / elapsed`.
    public var batchesPerSecond: Double
    /// Round trip of one coordinator call (register, claim or complete), median and 99th percentile.
    public var callLatencyP50: Duration
    public var callLatencyP99: Duration

    /// One line: `N batches/s (B batches, C tasks, T s; call p50 X ms, p99 Y ms)`.
    public var summary: String {
        func ms(_ duration: Duration) -> String {
            let value = Double(RetryPolicy.microseconds(duration)) / 1000
            return String(Double(Int(value * 1000)) / 1000)
        }
        let seconds = Double(RetryPolicy.microseconds(self.elapsed)) / 1_000_000
        return "\(Int(self.batchesPerSecond)) batches/s (\(self.batches) batches, \(self.concurrency) tasks, "
            + (self.shards > 1 ? "\(self.shards) sub-queues, " : "")
            + "\(String(Double(Int(seconds * 1000)) / 1000)) s; call p50 \(ms(self.callLatencyP50)) ms, "
            + "p99 \(ms(self.callLatencyP99)) ms)"
    }
}

/// Drives the coordinator alone (no data): each of `concurrency` tasks repeatedly registers `claimLimit`
/// batches, claims up to `claimLimit` (1…1000) at once and completes what it got, until `batches` batches were
/// registered; then the tasks drain what is left. With `replicasAck` N > 0 every state change waits for N replicas
/// (`WAIT N 1000`), as with `--valkey-replicas-ack`. Calls of
/// concurrent tasks share one connection per server and are pipelined by the RESP client. Uses a fresh queue
/// `bench-<random>` — spread over `shards` sub-queues (1…1024) when `shards` > 1; with 2…8 of them, a name whose
/// sub-queues' slots fall in different K-ths of the slot space — and removes its batches and keys afterwards
/// (not timed).
/// - Throws: `NodeError.invalidArgument` for batches or concurrency below 1; `NodeError.unavailable` when Valkey
///   fails; `NodeError.failedPrecondition` if a batch was not completed exactly once (a coordinator bug).
public func runCoordinatorBenchmark(
    valkey: ValkeyConnection, batches: Int, concurrency: Int, claimLimit: Int = 1, shards: Int = 1,
    replicasAck: Int = 0
) async throws -> CoordinatorBenchmarkResult {
    guard batches >= 1, concurrency >= 1 else {
        throw NodeError.invalidArgument("the benchmark needs at least 1 batch and 1 task")
    }
    guard (1...Coordinator.maxClaim).contains(claimLimit) else {
        throw NodeError.invalidArgument("the claim limit must be 1 to \(Coordinator.maxClaim), got \(claimLimit)")
    }
    guard (1...Coordinator.maxShards).contains(shards) else {
        throw NodeError.invalidArgument("the shard count must be 1 to \(Coordinator.maxShards), got \(shards)")
    }
    let coordinator = Coordinator(valkey: valkey, replicasAck: replicasAck)
    // A fresh queue; with 2…8 sub-queues one whose sub-queues' slots fall in different K-ths of the slot space,
    // so on a cluster whose primaries hold equal slot ranges (`--cluster create`) each primary gets its share.
    var name = "bench-\(UInt64.random(in: 0...UInt64.max) % 1_000_000_000_000)"
    for _ in 0..<10_000 where (2...8).contains(shards) {
        let parts = Set((0..<shards).map { HashSlot.slot(for: "\(name)#\($0)") * shards / HashSlot.count })
        if parts.count == shards { break }
        name = "bench-\(UInt64.random(in: 0...UInt64.max) % 1_000_000_000_000)"
    }
    let queue = name
    let layout = shards > 1 ? try await coordinator.configureShards(queue: queue, shards: shards)
        : QueueLayout(queue: queue, shards: 1)
    let counters = CoordinatorBenchmarkCounters()
    let clock = ContinuousClock()

    let start = clock.now
    let latencies = try await withThrowingTaskGroup(of: [Duration].self) { group in
        for index in 0..<concurrency {
            group.addTask(executorPreference: valkey.taskExecutor) {
                try await CoordinatorBenchmarkCounters.worker(
                    index, coordinator: coordinator, queue: queue, batches: batches, claimLimit: claimLimit,
                    counters: counters)
            }
        }
        var all: [Duration] = []
        for try await part in group { all += part }
        return all
    }
    let elapsed = start.duration(to: clock.now)
    let done = counters.completed.load(ordering: .relaxed)

    // Cleanup (not timed): every batch is completed, so a retention of zero drops them all.
    let sweeper = Coordinator(valkey: valkey, retention: .zero)
    for _ in 0..<1000 {
        if try await sweeper.housekeeping(queue: queue).expired == 0 { break }
    }
    _ = try? await valkey.send(RESPCommand("SREM", Coordinator.queuesKey, queue), key: Coordinator.queuesKey)
    for prefix in layout.drain + [QueueKeys(queue)] {
        for key in [prefix.ready, prefix.wake, prefix.leases, prefix.delayed, prefix.prefix + "seq", prefix.config] {
            _ = try? await valkey.send(RESPCommand("DEL", key), key: key)
        }
    }

    guard done == batches else {
        throw NodeError.failedPrecondition("benchmark: \(done) of \(batches) batches were completed")
    }
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> Duration {
        guard !sorted.isEmpty else { return .zero }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
    }
    let seconds = Double(RetryPolicy.microseconds(elapsed)) / 1_000_000
    return CoordinatorBenchmarkResult(
        batches: batches, concurrency: concurrency, shards: shards, elapsed: elapsed,
        batchesPerSecond: seconds > 0 ? Double(batches) / seconds : 0, callLatencyP50: percentile(0.5),
        callLatencyP99: percentile(0.99))
}

extension RetryPolicy {
    /// Whole microseconds of `duration` (negative → 0).
    static func microseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        guard seconds < Int64.max / 1_000_000 - 1 else { return Int64.max / 1_000_000 }
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}

/// The shared counters of one benchmark run and the loop each task runs.
private final class CoordinatorBenchmarkCounters: Sendable {
    /// Batches handed out to register (1-based after the increment).
    let next = Atomic<Int>(0)
    /// Batches completed.
    let completed = Atomic<Int>(0)

    static func worker(
        _ index: Int, coordinator: Coordinator, queue: String, batches: Int, claimLimit: Int,
        counters: CoordinatorBenchmarkCounters
    ) async throws -> [Duration] {
        let clock = ContinuousClock()
        let policy = RetryPolicy()
        var latencies: [Duration] = []
        latencies.reserveCapacity(3 * (batches / 4 + 2))
        func claimAndComplete() async throws -> Bool {
            var start = clock.now
            let claims = try await coordinator.claim(
                queue: queue, worker: "bench-\(index)", limit: claimLimit, lease: .seconds(60), policy: policy)
            latencies.append(start.duration(to: clock.now))
            for claim in claims {
                start = clock.now
                let result = try await coordinator.complete(claim, resultKey: nil)
                latencies.append(start.duration(to: clock.now))
                guard result == .accepted else {
                    throw NodeError.failedPrecondition("benchmark: complete of \(claim.key) answered \(result)")
                }
                counters.completed.add(1, ordering: .relaxed)
            }
            return !claims.isEmpty
        }
        while true {
            let last = counters.next.add(claimLimit, ordering: .relaxed).newValue
            let first = last - claimLimit + 1
            guard first <= batches else { break }
            for n in first...min(last, batches) {
                let key = try BatchKey(queue: queue, id: "b\(n)")
                let start = clock.now
                _ = try await coordinator.register(
                    key, location: "grpc://127.0.0.1:8815", rows: 1, bytes: 1, maxAttempts: 3)
                latencies.append(start.duration(to: clock.now))
            }
            _ = try await claimAndComplete()
        }
        // Drain what is left (a task's claim may have taken another's batch). Batches claimed by other tasks
        // but not yet completed make the claim come back empty: wait a moment, for at most 30 s.
        let drainDeadline = clock.now.advanced(by: .seconds(30))
        while counters.completed.load(ordering: .relaxed) < batches {
            if try await !claimAndComplete() {
                guard clock.now < drainDeadline else { break }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        return latencies
    }
}
