import RESP
import Synchronization

/// Keeps every batch's state in Valkey: one Lua script per transition (`CoordinatorScripts` documents the keys
/// and rules), times from Valkey's clock, fencing tokens, leases, retries and retention.
///
/// All methods are safe to call from many tasks and many processes at once: every state change is one
/// script, so concurrent callers (and concurrent housekeeping) cannot interleave inside a transition.
/// Errors: `NodeError.invalidArgument` for a bad queue, key or argument; `NodeError.unavailable` when Valkey
/// cannot be reached or answers unexpectedly; `NodeError.resourceExhausted` when Valkey is out of memory.
public final class Coordinator: Sendable {
    /// The Valkey handle every call goes through.
    public let valkey: ValkeyConnection
    /// How long finished batches keep their status.
    public let retention: Duration

    private let retentionMilliseconds: Int64
    /// Queues already added to `vf:queues` by this process (forgotten after a connection error, in case the
    /// server restarted empty).
    private let knownQueues = Mutex<Set<String>>([])

    /// Most batches one claim takes.
    public static let maxClaim = 1000
    /// Most statuses `list` returns.
    public static let maxList = 10_000
    /// `last_error` is cut to this many UTF-8 bytes.
    public static let maxErrorBytes = 4096
    static let maxLocationBytes = 2048
    static let maxWorkerBytes = 256
    static let maxAttemptsLimit = 1000
    /// Ids each housekeeping script handles per call, and calls per step per pass.
    static let housekeepingBatch = 1000
    static let housekeepingRounds = 100
    static let queuesKey = "vf:queues"

    /// Replicas every state change must reach (`WAIT`) before a call returns; 0 = no WAIT.
    public let replicasAck: Int
    /// Shard counts assumed for queues that have no configuration in Valkey (`vf:{Q}:config`): queue → K.
    public let queueShards: [String: Int]
    /// How long a queue's layout read from Valkey is used before it is read again.
    public let layoutRefresh: Duration
    private let onReplicaShortfall: (@Sendable (String) -> Void)?
    /// Layouts read from Valkey, with when they were read.
    private let layouts = Mutex<[String: (layout: QueueLayout, read: ContinuousClock.Instant)]>([:])
    /// Per queue, the position in its key sets where the next claim starts (round-robin over sub-queues).
    private let claimCursors = Mutex<[String: Int]>([:])
    /// Most sub-queues of one queue.
    public static let maxShards = 1024

    /// A coordinator on `valkey`; finished batches are dropped `retention` after they finished.
    /// With `replicasAck` N > 0 (`--valkey-replicas-ack`), every call that changed state sends `WAIT N 1000`
    /// on the connection that made the change before it returns; when fewer replicas acknowledged within
    /// that second, the change still stands and `onReplicaShortfall` gets a one-line warning.
    /// A queue's shard count lives in Valkey (`vf:{Q}:config`, see `configureShards`) and is read again every
    /// `layoutRefresh` (default 2 s), so every process picks up a change without a restart. `queueShards` [Q: K]
    /// is the count assumed for a queue that has no configuration there (clamped to 1…1024). A sharded queue Q
    /// is K sub-queues `Q#0…Q#K-1` (keys `vf:{Q#k}:…`, each its own slot); a batch's sub-queue is CRC16(ID)
    /// mod K, and everything else (claims, stats, lists, keys) still says Q.
    public init(
        valkey: ValkeyConnection, retention: Duration = .seconds(7 * 86400), replicasAck: Int = 0,
        queueShards: [String: Int] = [:], layoutRefresh: Duration = .seconds(2),
        onReplicaShortfall: (@Sendable (String) -> Void)? = nil
    ) {
        self.valkey = valkey
        self.retention = retention
        self.replicasAck = max(0, replicasAck)
        self.queueShards = queueShards.mapValues { min(max($0, 1), Self.maxShards) }.filter { $0.value > 1 }
        self.layoutRefresh = max(.zero, layoutRefresh)
        self.onReplicaShortfall = onReplicaShortfall
        self.retentionMilliseconds = RetryPolicy.milliseconds(retention)
    }

    // MARK: Registering and claiming

    /// Registers a stored batch: pending, pushed on the ready list, one waiting worker woken. Idempotent by key:
    /// a second register of the same key returns the existing status with `created == false`.
    /// - Throws: `NodeError.invalidArgument` for a result key, `maxAttempts` outside 1…1000, negative rows or
    ///   bytes, a location over 2048 bytes; `NodeError.unavailable` when Valkey fails.
    public func register(_ key: BatchKey, location: String, rows: Int, bytes: Int, maxAttempts: Int) async throws
        -> (status: BatchStatus, created: Bool)
    {
        guard !key.isResult else { throw NodeError.invalidArgument("'\(key)' is a result key; register its input") }
        guard (1...Self.maxAttemptsLimit).contains(maxAttempts) else {
            throw NodeError.invalidArgument("max attempts must be 1 to \(Self.maxAttemptsLimit), got \(maxAttempts)")
        }
        guard rows >= 0, bytes >= 0 else {
            throw NodeError.invalidArgument("rows and bytes must not be negative, got \(rows) and \(bytes)")
        }
        guard location.utf8.count <= Self.maxLocationBytes else {
            throw NodeError.invalidArgument("location is longer than \(Self.maxLocationBytes) bytes")
        }
        try await self.noteQueue(key.queue)
        var layout = try await self.layout(key.queue)
        var reply = RESPValue.null
        // At most twice: a stale layout that still says "plain queue" is refused by the script (the queue is
        // sharded now), read again, and the batch registered in its sub-queue.
        for round in 0..<2 {
            let keys = layout.keys(forNew: key.id)
            // Idempotent across a change of the shard count: the key may be registered under an earlier count.
            for other in layout.candidates(key.id).dropFirst() {
                let hash = other.batch(key.id)
                let fields = Self.fields(try await self.send(RESPCommand("HGETALL", hash), key: hash))
                if let status = BatchStatus(key: key, fields: fields) { return (status, false) }
            }
            let plain = layout.shards == 1
            reply = try await self.eval(
                CoordinatorScripts.register, keys: [keys.batch(key.id)] + (plain ? [keys.config] : []),
                [keys.prefix, key.id, location, rows, bytes, maxAttempts])
            guard reply.elements?.first?.integer == -2 else { break }
            guard round == 0 else { throw Self.unexpected("register", reply) }
            layout = try await self.readLayout(key.queue)
        }
        guard let parts = reply.elements, parts.count == 2, let flag = parts[0].integer else {
            throw Self.unexpected("register", reply)
        }
        if flag == 1, let created = parts[1].integer {
            let status = BatchStatus(
                key: key, state: .pending, attempts: 0, maxAttempts: maxAttempts, lastError: nil, resultKey: nil,
                location: location, worker: nil, createdAtMilliseconds: created, updatedAtMilliseconds: created,
                rows: rows, bytes: bytes, dueAtMilliseconds: nil)
            return (status, true)
        }
        guard let status = BatchStatus(key: key, fields: Self.fields(parts[1])) else {
            throw Self.unexpected("register", reply)
        }
        return (status, false)
    }

    /// Claims up to `limit` (at most 1000) ready batches of `queue`, skipping ids whose batch is no longer
    /// pending: each becomes processing with attempts + 1, a fresh unique token, a lease until now + `lease`
    /// and `worker` recorded; `policy`'s base and cap are stored on the batch for reaping. The batch's own
    /// `max_attempts` (from register) stays authoritative. Returns [] when nothing is ready. A sharded queue's
    /// sub-queues are tried in turn, from a random one, until `limit` is reached (one script call each).
    /// - Throws: `NodeError.invalidArgument` for a bad queue, a lease under 1 ms or a worker name over 256 bytes.
    public func claim(queue: String, worker: String, limit: Int, lease: Duration, policy: RetryPolicy) async throws
        -> [BatchClaim]
    {
        try BatchKey.check(queue, "queue")
        let leaseMilliseconds = RetryPolicy.milliseconds(lease)
        guard leaseMilliseconds >= 1 else { throw NodeError.invalidArgument("the lease must be at least 1 ms") }
        guard worker.utf8.count <= Self.maxWorkerBytes else {
            throw NodeError.invalidArgument("worker name is longer than \(Self.maxWorkerBytes) bytes")
        }
        guard limit >= 1 else { return [] }
        let wanted = min(limit, Self.maxClaim)
        let sets = try await self.layout(queue).drain
        func claim(from keys: QueueKeys, _ count: Int) async throws -> [BatchClaim] {
            let reply = try await self.eval(
                CoordinatorScripts.claim, keys: [keys.ready],
                [
                    keys.prefix, worker, count, leaseMilliseconds,
                    RetryPolicy.milliseconds(policy.base), RetryPolicy.milliseconds(policy.max),
                    max(1, policy.maxAttempts),
                ])
            return try Self.claims(reply, queue: queue, keys: keys)
        }
        guard sets.count > 1 else { return try await claim(from: sets[0], wanted) }
        // Round-robin over the sub-queues: this claim starts where the last one of this process left off
        // (after the last sub-queue that gave a batch), and a first pass takes a fair share from each, so no
        // sub-queue waits for another to drain. A second pass fills up from those that gave their full share.
        let start = self.claimCursors.withLock { cursors in
            let start = (cursors[queue] ?? 0) % sets.count
            cursors[queue] = start + 1
            return start
        }
        let share = max(1, (wanted + sets.count - 1) / sets.count)
        var claims: [BatchClaim] = []
        var full: [Int] = []
        var last: Int?
        for offset in 0..<sets.count where claims.count < wanted {
            let index = (start + offset) % sets.count
            let ask = min(share, wanted - claims.count)
            let got = try await claim(from: sets[index], ask)
            if !got.isEmpty { last = index }
            if got.count == ask { full.append(index) }
            claims += got
        }
        for index in full where claims.count < wanted {
            let got = try await claim(from: sets[index], wanted - claims.count)
            if !got.isEmpty { last = index }
            claims += got
        }
        if let last { self.claimCursors.withLock { $0[queue] = last + 1 } }
        return claims
    }

    private static func claims(_ reply: RESPValue, queue: String, keys: QueueKeys) throws -> [BatchClaim] {
        guard let values = reply.elements, values.count % 8 == 0 else { throw Self.unexpected("claim", reply) }
        var claims: [BatchClaim] = []
        claims.reserveCapacity(values.count / 8)
        for start in stride(from: 0, to: values.count, by: 8) {
            guard let id = values[start].string, let token = values[start + 1].string,
                let attempt = values[start + 2].integer, let location = values[start + 3].string,
                let maxAttempts = values[start + 4].integer, let rows = values[start + 5].integer,
                let bytes = values[start + 6].integer, let waited = values[start + 7].integer,
                let key = try? BatchKey(queue: queue, id: id)
            else { throw Self.unexpected("claim", reply) }
            var claim = BatchClaim(
                key: key, token: token, attempt: Int(attempt), location: location, maxAttempts: Int(maxAttempts),
                rows: Int(rows), bytes: Int(bytes), waitedMilliseconds: max(0, waited))
            claim.queuePrefix = keys.prefix
            claims.append(claim)
        }
        return claims
    }

    /// Blocks until some queue of `queues` was woken (a register, promote, retry or release pushed its wake list)
    /// or `timeout` passed; true when woken. Waits with BLPOP rounds of at most 1 s on dedicated connections
    /// (never the shared pipelined one); on a cluster, one BLPOP per queue (per sub-queue of a sharded queue),
    /// concurrently, first one wins.
    /// A wake-up taken by a round whose caller already returned (another queue won, or the caller was cancelled)
    /// is pushed back, so no wake-up is lost. Returns false when the calling task is cancelled (within ~1 s at
    /// most, the BLPOP then finishes on its own).
    /// - Throws: `NodeError.invalidArgument` for no or a bad queue; `NodeError.unavailable` when Valkey fails.
    public func waitForWork(queues: [String], timeout: Duration) async throws -> Bool {
        guard !queues.isEmpty else { throw NodeError.invalidArgument("waitForWork needs at least one queue") }
        for queue in queues { try BatchKey.check(queue, "queue") }
        var wakeKeys: [String] = []
        for queue in Set(queues).sorted() { wakeKeys += try await self.layout(queue).drain.map(\.wake) }
        let groups = self.valkey.isCluster ? wakeKeys.map { [$0] } : [wakeKeys]
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while !Task.isCancelled {
            let remaining = clock.now.duration(to: deadline)
            if remaining <= .zero { return false }
            switch await WakeRound.run(groups: groups, round: min(remaining, .seconds(1)), valkey: self.valkey) {
            case .woken: return true
            case .timedOut: continue
            case .cancelled: return false
            case .failed(let error):
                self.forgetQueues(after: error)
                throw NodeError(valkey: error, url: self.valkey.displayURL)
            }
        }
        return false
    }

    // MARK: Fenced transitions

    /// Moves the lease of `claim` to now + `lease`, if its token is still current.
    /// - Throws: `NodeError.invalidArgument` for a lease under 1 ms; `NodeError.unavailable`.
    public func extend(_ claim: BatchClaim, lease: Duration) async throws -> FenceResult {
        let leaseMilliseconds = RetryPolicy.milliseconds(lease)
        guard leaseMilliseconds >= 1 else { throw NodeError.invalidArgument("the lease must be at least 1 ms") }
        let keys = try await self.keys(of: claim)
        let reply = try await self.eval(
            CoordinatorScripts.extend, keys: [keys.batch(claim.key.id)],
            [keys.prefix, claim.key.id, claim.token, leaseMilliseconds])
        return try Self.fence(reply, "extend")
    }

    /// True while `claim.token` is the batch's current token (used to fence the result write).
    /// - Throws: `NodeError.unavailable`.
    public func isCurrent(_ claim: BatchClaim) async throws -> Bool {
        let key = try await self.keys(of: claim).batch(claim.key.id)
        let reply = try await self.send(RESPCommand("HMGET", key, "status", "token"), key: key)
        guard let values = reply.elements, values.count == 2 else { throw Self.unexpected("HMGET", reply) }
        return values[0].string == BatchState.processing.rawValue && values[1].string == claim.token
    }

    /// Completes the batch of `claim` (recording `resultKey`), if its token is still current.
    /// - Throws: `NodeError.unavailable`.
    public func complete(_ claim: BatchClaim, resultKey: BatchKey?) async throws -> FenceResult {
        let keys = try await self.keys(of: claim)
        let reply = try await self.eval(
            CoordinatorScripts.complete, keys: [keys.batch(claim.key.id)],
            [keys.prefix, claim.key.id, claim.token, resultKey?.description ?? ""])
        return try Self.fence(reply, "complete")
    }

    /// Fails the attempt of `claim`, if its token is still current: `permanent` (e.g. "input data gone") or
    /// attempts ≥ max_attempts → failed with `error` as last_error; otherwise retry_wait, due after `retryDelay`
    /// (compute it with `RetryPolicy.delay(afterAttempt:)`). `error` is cut to 4096 bytes.
    /// - Throws: `NodeError.unavailable`.
    public func fail(_ claim: BatchClaim, error: String, retryDelay: Duration, permanent: Bool) async throws
        -> FailOutcome
    {
        let keys = try await self.keys(of: claim)
        let reply = try await self.eval(
            CoordinatorScripts.fail, keys: [keys.batch(claim.key.id)],
            [
                keys.prefix, claim.key.id, claim.token, Self.bounded(error, bytes: Self.maxErrorBytes),
                RetryPolicy.milliseconds(retryDelay), permanent ? "1" : "0",
            ])
        guard let values = reply.elements, let flag = values.first?.integer else {
            throw Self.unexpected("fail", reply)
        }
        switch flag {
        case 1: return .failed
        case 2:
            guard values.count == 2, let due = values[1].integer else { throw Self.unexpected("fail", reply) }
            return .retryScheduled(dueAtMilliseconds: due)
        case 0: return .stale
        case -1: return .notFound
        default: throw Self.unexpected("fail", reply)
        }
    }

    /// Graceful shutdown: gives the batch of `claim` back (pending again, attempts − 1 since the attempt did
    /// not happen, at the head of the ready list, a worker woken), if its token is still current.
    /// - Throws: `NodeError.unavailable`.
    public func release(_ claim: BatchClaim) async throws -> FenceResult {
        let keys = try await self.keys(of: claim)
        let reply = try await self.eval(
            CoordinatorScripts.release, keys: [keys.batch(claim.key.id)], [keys.prefix, claim.key.id, claim.token])
        return try Self.fence(reply, "release")
    }

    // MARK: Housekeeping

    /// One housekeeping pass over `queue`: reap expired leases (a failed attempt: retry_wait with the policy
    /// stored at claim, or failed with "lease expired: worker W stopped extending its lease" when attempts ≥
    /// max), promote due retries (→ pending, workers woken), drop finished batches older than the retention.
    /// Each step handles at most 100,000 batches per pass. Safe to run concurrently from many processes.
    /// - Throws: `NodeError.invalidArgument` for a bad queue; `NodeError.unavailable`.
    public func housekeeping(queue: String) async throws -> HousekeepingReport {
        try BatchKey.check(queue, "queue")
        var report = HousekeepingReport()
        let layout = try await self.layout(queue)
        for keys in layout.drain { report = report + (try await self.housekeeping(keys)) }
        // Once a sharded queue's plain key set is empty, it is dropped from the queue's history.
        if layout.shards > 1, layout.history.contains(1) { _ = try await self.runConfigure(queue, shards: nil) }
        return report
    }

    private func housekeeping(_ keys: QueueKeys) async throws -> HousekeepingReport {
        let defaults = RetryPolicy()
        var report = HousekeepingReport()
        for _ in 0..<Self.housekeepingRounds {
            let reply = try await self.eval(
                CoordinatorScripts.reap, keys: [keys.leases],
                [
                    keys.prefix, Self.housekeepingBatch, RetryPolicy.milliseconds(defaults.base),
                    RetryPolicy.milliseconds(defaults.max),
                ])
            guard let values = reply.elements, values.count == 3, let reaped = values[0].integer,
                let failed = values[1].integer, let examined = values[2].integer
            else { throw Self.unexpected("reap", reply) }
            report.reaped += Int(reaped)
            report.failedByReap += Int(failed)
            if examined < Self.housekeepingBatch { break }
        }
        for _ in 0..<Self.housekeepingRounds {
            let reply = try await self.eval(
                CoordinatorScripts.promote, keys: [keys.delayed], [keys.prefix, Self.housekeepingBatch])
            guard let values = reply.elements, values.count == 2, let promoted = values[0].integer,
                let examined = values[1].integer
            else { throw Self.unexpected("promote", reply) }
            report.promoted += Int(promoted)
            if examined < Self.housekeepingBatch { break }
        }
        for _ in 0..<Self.housekeepingRounds {
            let reply = try await self.eval(
                CoordinatorScripts.expire, keys: [keys.index(.completed)],
                [keys.prefix, self.retentionMilliseconds, Self.housekeepingBatch])
            guard let expired = reply.integer else { throw Self.unexpected("expire", reply) }
            report.expired += Int(expired)
            if expired < Self.housekeepingBatch { break }
        }
        return report
    }

    /// `housekeeping(queue:)` for every queue in `vf:queues`, summed.
    /// - Throws: `NodeError.unavailable`.
    public func housekeepingAllQueues() async throws -> HousekeepingReport {
        var report = HousekeepingReport()
        for queue in try await self.queues() { report = report + (try await self.housekeeping(queue: queue)) }
        return report
    }

    // MARK: Reading

    /// The status of `key`, nil if unknown (never registered, deleted or expired).
    /// - Throws: `NodeError.unavailable`.
    public func status(_ key: BatchKey) async throws -> BatchStatus? {
        let shown = key.isResult ? (try? BatchKey(queue: key.queue, id: key.id)) ?? key : key
        let candidates = try await self.layout(key.queue).candidates(key.id)
        if candidates.count == 1 {
            let hash = candidates[0].batch(key.id)
            return BatchStatus(key: shown, fields: Self.fields(try await self.send(RESPCommand("HGETALL", hash), key: hash)))
        }
        let replies = try await self.pipeline(candidates.map { keys in
            (command: RESPCommand("HGETALL", keys.batch(key.id)), key: keys.batch(key.id))
        })
        for result in replies {
            if let status = BatchStatus(key: shown, fields: Self.fields(try self.value(result))) { return status }
        }
        return nil
    }

    /// Statuses, newest first (by last update); `queue` nil = every queue of `vf:queues`, `state` nil = every
    /// state; at most `limit` (clamped to 0…10,000).
    /// - Throws: `NodeError.invalidArgument` for a bad queue; `NodeError.unavailable`.
    public func list(queue: String?, state: BatchState?, limit: Int) async throws -> [BatchStatus] {
        let limit = min(max(limit, 0), Self.maxList)
        guard limit > 0 else { return [] }
        if let queue { try BatchKey.check(queue, "queue") }
        let queues: [String]
        if let queue { queues = [queue] } else { queues = try await self.queues() }
        let states = state.map { [$0] } ?? BatchState.allCases
        var commands: [(command: RESPCommand, key: String)] = []
        var sources: [(queue: String, state: BatchState, keys: QueueKeys)] = []
        for queue in queues {
            for keys in try await self.layout(queue).drain {
                for state in states {
                    let index = keys.index(state)
                    if state == .pending {
                        commands.append((RESPCommand("LRANGE", index, -limit, -1), index))
                    } else {
                        commands.append((RESPCommand("ZREVRANGE", index, 0, limit - 1, "WITHSCORES"), index))
                    }
                    sources.append((queue, state, keys))
                }
            }
        }
        // Indexes scored by last update (the finished states) are merged by score and cut to `limit`; the
        // newest pending (end of the ready list), processing (scored by lease deadline) and retry_wait (by due
        // time) candidates are all kept. The final order is by updated_at.
        var byUpdate: [(score: Double, key: BatchKey, keys: QueueKeys)] = []
        var others: [(key: BatchKey, keys: QueueKeys)] = []
        for (source, result) in zip(sources, try await self.pipeline(commands)) {
            let reply = try self.value(result)
            if source.state == .pending {
                guard let ids = reply.elements else { throw Self.unexpected("LRANGE", reply) }
                others += ids.compactMap { $0.string.flatMap { try? BatchKey(queue: source.queue, id: $0) } }
                    .map { ($0, source.keys) }
                continue
            }
            for (id, score) in try Self.scoredMembers(reply) {
                guard let key = try? BatchKey(queue: source.queue, id: id) else { continue }
                if source.state == .processing || source.state == .retryWait {
                    others.append((key, source.keys))
                } else {
                    byUpdate.append((score, key, source.keys))
                }
            }
        }
        byUpdate.sort { $0.score != $1.score ? $0.score > $1.score : $0.key > $1.key }
        let chosen: [(key: BatchKey, keys: QueueKeys)] = byUpdate.prefix(limit).map { ($0.key, $0.keys) } + others
        let hashes = chosen.map { key, keys in
            let hash = keys.batch(key.id)
            return (command: RESPCommand("HGETALL", hash), key: hash)
        }
        var statuses: [BatchStatus] = []
        statuses.reserveCapacity(chosen.count)
        for ((key, _), result) in zip(chosen, try await self.pipeline(hashes)) {
            if let status = BatchStatus(key: key, fields: Self.fields(try self.value(result))) {
                statuses.append(status)
            }
        }
        statuses.sort {
            $0.updatedAtMilliseconds != $1.updatedAtMilliseconds
                ? $0.updatedAtMilliseconds > $1.updatedAtMilliseconds : $0.key > $1.key
        }
        return Array(statuses.prefix(limit))
    }

    /// Exact counts per queue and state (every state present, zeros included), from the per-state indexes.
    /// - Throws: `NodeError.unavailable`.
    public func stats() async throws -> [String: [BatchState: Int]] {
        let queues = try await self.queues()
        return try await withThrowingTaskGroup(of: (String, [BatchState: Int]).self) { group in
            for queue in queues {
                group.addTask {
                    var counts: [BatchState: Int] = [:]
                    for state in BatchState.allCases { counts[state] = 0 }
                    for keys in try await self.layout(queue).drain {
                        let reply = try await self.eval(CoordinatorScripts.stats, keys: [keys.ready], [keys.prefix])
                        guard let values = reply.elements, values.count == BatchState.allCases.count else {
                            throw Self.unexpected("stats", reply)
                        }
                        for (state, value) in zip(BatchState.allCases, values) {
                            counts[state, default: 0] += Int(value.integer ?? 0)
                        }
                    }
                    return (queue, counts)
                }
            }
            var all: [String: [BatchState: Int]] = [:]
            for try await (queue, counts) in group { all[queue] = counts }
            return all
        }
    }

    /// Every queue ever registered (from `vf:queues`), sorted.
    /// - Throws: `NodeError.unavailable`.
    public func queues() async throws -> [String] {
        let reply = try await self.send(RESPCommand("SMEMBERS", Self.queuesKey), key: Self.queuesKey)
        guard let members = reply.elements else { throw Self.unexpected("SMEMBERS", reply) }
        return members.compactMap(\.string).filter { (try? BatchKey.check($0, "queue")) != nil }.sorted()
    }

    // MARK: Management

    /// failed|cancelled → pending (attempts 0, token and worker cleared, `last_error` kept until the next
    /// attempt ends, a worker woken). Nil if the batch is unknown.
    /// - Throws: `NodeError.failedPrecondition` for any other state; `NodeError.unavailable`.
    public func retry(_ key: BatchKey) async throws -> BatchStatus? {
        let keys = try await self.locate(key)
        let reply = try await self.eval(CoordinatorScripts.retry, keys: [keys.batch(key.id)], [keys.prefix, key.id])
        return try self.managed(reply, key: key, "retry") { state in
            "batch \(key) is \(state); only failed or cancelled batches can be retried"
        }
    }

    /// pending|retry_wait|processing → cancelled (a processing batch's token becomes stale, so its worker's
    /// complete or fail is refused). Nil if the batch is unknown.
    /// - Throws: `NodeError.failedPrecondition` for a finished batch; `NodeError.unavailable`.
    public func cancel(_ key: BatchKey) async throws -> BatchStatus? {
        let keys = try await self.locate(key)
        let reply = try await self.eval(
            CoordinatorScripts.cancel, keys: [keys.batch(key.id)], [keys.prefix, key.id])
        return try self.managed(reply, key: key, "cancel") { state in
            "batch \(key) is already \(state); only pending, retry_wait or processing batches can be cancelled"
        }
    }

    /// Removes the batch's metadata from every index; returns its last status, nil if unknown.
    /// (A stale id left in the ready list is skipped by claim.)
    /// - Throws: `NodeError.unavailable`.
    public func delete(_ key: BatchKey) async throws -> BatchStatus? {
        let keys = try await self.locate(key)
        let reply = try await self.eval(CoordinatorScripts.delete, keys: [keys.batch(key.id)], [keys.prefix, key.id])
        return try self.managed(reply, key: key, "delete") { state in "batch \(key) is \(state)" }
    }

    // MARK: Helpers

    private func managed(
        _ reply: RESPValue, key: BatchKey, _ operation: String, refusal: (String) -> String
    ) throws -> BatchStatus? {
        guard let values = reply.elements, let flag = values.first?.integer else {
            throw Self.unexpected(operation, reply)
        }
        switch flag {
        case -1: return nil
        case 0: throw NodeError.failedPrecondition(refusal(values.count > 1 ? values[1].string ?? "?" : "?"))
        case 1:
            guard values.count == 2, let status = BatchStatus(key: key, fields: Self.fields(values[1])) else {
                throw Self.unexpected(operation, reply)
            }
            return status
        default: throw Self.unexpected(operation, reply)
        }
    }

    /// The keys of the (sub-)queue holding the batch of `claim`: the one it was claimed from, else located.
    private func keys(of claim: BatchClaim) async throws -> QueueKeys {
        if let prefix = claim.queuePrefix { return QueueKeys(prefix: prefix) }
        return try await self.locate(claim.key)
    }

    /// The keys of the (sub-)queue holding `key`: with one candidate (the queue's shard count never changed)
    /// that one, else the first candidate whose batch hash exists (the current one when none does).
    func locate(_ key: BatchKey) async throws -> QueueKeys {
        let candidates = try await self.layout(key.queue).candidates(key.id)
        guard candidates.count > 1 else { return candidates[0] }
        let replies = try await self.pipeline(candidates.map { keys in
            (command: RESPCommand("EXISTS", keys.batch(key.id)), key: keys.batch(key.id))
        })
        for (keys, result) in zip(candidates, replies) where try self.value(result).integer == 1 { return keys }
        return candidates[0]
    }

    /// The layout of `queue`: read from `vf:{Q}:config` at most every `layoutRefresh`; without a configuration
    /// there, K from `queueShards` (default 1).
    /// - Throws: `NodeError.unavailable` when Valkey fails.
    public func layout(_ queue: String) async throws -> QueueLayout {
        let now = ContinuousClock.now
        if let cached = self.layouts.withLock({ $0[queue] }), cached.read.duration(to: now) < self.layoutRefresh {
            return cached.layout
        }
        return try await self.readLayout(queue)
    }

    /// The layout of `queue` read from Valkey now (and cached).
    /// - Throws: `NodeError.invalidArgument` for a bad queue name; `NodeError.unavailable` when Valkey fails.
    public func readLayout(_ queue: String) async throws -> QueueLayout {
        try BatchKey.check(queue, "queue")
        let key = QueueKeys(queue).config
        let started = ContinuousClock.now
        let reply = try await self.send(RESPCommand("HMGET", key, "shards", "history"), key: key)
        guard let values = reply.elements, values.count == 2 else { throw Self.unexpected("HMGET", reply) }
        let layout = QueueLayout(queue: queue, shardsField: values[0].string, historyField: values[1].string)
            ?? QueueLayout(queue: queue, shards: self.queueShards[queue] ?? 1)
        self.layouts.withLock { $0[queue] = (layout, started) }
        return layout
    }

    /// Sets the shard count of `queue` to `shards` in Valkey (`vf:{Q}:config`), adding it to the queue's history,
    /// and lists the queue in `vf:queues`. New batches go to the new sub-queues at once in this process, in
    /// others within their `layoutRefresh`; batches already registered stay where they are and keep being
    /// claimed, swept, counted and found, whatever the count becomes later.
    /// - Throws: `NodeError.invalidArgument` for a bad queue name or `shards` outside 1…1024;
    ///   `NodeError.unavailable` when Valkey fails.
    public func configureShards(queue: String, shards: Int) async throws -> QueueLayout {
        try BatchKey.check(queue, "queue")
        guard (1...Self.maxShards).contains(shards) else {
            throw NodeError.invalidArgument("the shard count of a queue must be 1 to \(Self.maxShards), got \(shards)")
        }
        try await self.noteQueue(queue)
        guard let layout = try await self.runConfigure(queue, shards: shards) else {
            throw Self.unexpected("configure", .null)
        }
        return layout
    }

    /// The configure script: set `shards` (nil: only prune the plain queue from the history); the layout it
    /// left (cached), nil when pruning a queue without a configuration.
    private func runConfigure(_ queue: String, shards: Int?) async throws -> QueueLayout? {
        // The history in effect when the queue has no configuration yet: the count it was used with until now.
        let previous = self.queueShards[queue] ?? 1
        let plain = QueueKeys(queue)
        let started = ContinuousClock.now
        let reply = try await self.eval(
            CoordinatorScripts.configure, keys: [plain.config],
            [shards.map(String.init) ?? "", String(previous), plain.prefix])
        guard let values = reply.elements, values.count == 3, let count = values[0].integer else {
            throw Self.unexpected("configure", reply)
        }
        if count == 0, shards == nil { return nil }
        guard let layout = QueueLayout(queue: queue, shardsField: String(count), historyField: values[1].string)
        else { throw Self.unexpected("configure", reply) }
        self.layouts.withLock { $0[queue] = (layout, started) }
        return layout
    }

    /// Adds `queue` to `vf:queues` once per process (before its first registration).
    private func noteQueue(_ queue: String) async throws {
        if self.knownQueues.withLock({ $0.contains(queue) }) { return }
        _ = try await self.send(RESPCommand("SADD", Self.queuesKey, queue), key: Self.queuesKey)
        self.knownQueues.withLock { _ = $0.insert(queue) }
    }

    private func forgetQueues(after error: any Error) {
        if let resp = error as? RESPError, resp.serverCode != nil { return }
        self.knownQueues.withLock { $0.removeAll() }
    }

    private func eval(_ script: RESPScript, keys: [String], _ arguments: [any RESPArgument]) async throws
        -> RESPValue
    {
        let reply: RESPValue
        do {
            reply = try await self.valkey.evalScript(script, keys: keys, arguments: arguments)
        } catch {
            self.forgetQueues(after: error)
            throw NodeError(valkey: error, url: self.valkey.displayURL)
        }
        if self.replicasAck > 0, let key = keys.first, Self.changedState(script, reply) {
            try await self.awaitReplicas(key: key)
        }
        return reply
    }

    /// `WAIT replicasAck 1000` on the connection serving `key` (the one that just ran the change).
    private func awaitReplicas(key: String) async throws {
        let reply = try await self.send(RESPCommand("WAIT", self.replicasAck, 1000), key: key)
        let acknowledged = Int(reply.integer ?? 0)
        if acknowledged < self.replicasAck {
            self.onReplicaShortfall?(
                "only \(acknowledged) of \(self.replicasAck) Valkey replicas acknowledged a state change within 1 s "
                    + "(--valkey-replicas-ack \(self.replicasAck)); continuing")
        }
    }

    /// Whether `reply` of `script` says something was written (only then is WAIT worth its round trip).
    static func changedState(_ script: RESPScript, _ reply: RESPValue) -> Bool {
        let first = reply.elements?.first?.integer
        switch script {
        case CoordinatorScripts.register, CoordinatorScripts.retry, CoordinatorScripts.cancel,
            CoordinatorScripts.delete:
            return first == 1
        case CoordinatorScripts.claim: return !(reply.elements?.isEmpty ?? true)
        case CoordinatorScripts.extend, CoordinatorScripts.complete, CoordinatorScripts.release:
            return reply.integer == 1
        case CoordinatorScripts.fail: return first == 1 || first == 2
        case CoordinatorScripts.promote, CoordinatorScripts.reap: return (first ?? 0) > 0
        case CoordinatorScripts.expire: return (reply.integer ?? 0) > 0
        case CoordinatorScripts.configure: return reply.elements?.last?.integer == 1
        default: return false
        }
    }

    private func send(_ command: RESPCommand, key: String) async throws -> RESPValue {
        do {
            return try await self.valkey.send(command, key: key)
        } catch {
            self.forgetQueues(after: error)
            throw NodeError(valkey: error, url: self.valkey.displayURL)
        }
    }

    private func pipeline(_ commands: [(command: RESPCommand, key: String)]) async throws -> [Result<
        RESPValue, RESPError
    >] {
        do {
            return try await self.valkey.pipeline(commands)
        } catch {
            self.forgetQueues(after: error)
            throw NodeError(valkey: error, url: self.valkey.displayURL)
        }
    }

    private func value(_ result: Result<RESPValue, RESPError>) throws -> RESPValue {
        switch result {
        case .success(let value): return value
        case .failure(let error):
            self.forgetQueues(after: error)
            throw NodeError(valkey: error, url: self.valkey.displayURL)
        }
    }

    private static func fence(_ reply: RESPValue, _ operation: String) throws -> FenceResult {
        switch reply.integer {
        case 1: return .accepted
        case 0: return .stale
        case -1: return .notFound
        default: throw Self.unexpected(operation, reply)
        }
    }

    static func unexpected(_ operation: String, _ reply: RESPValue) -> NodeError {
        .unavailable("Valkey answered \(operation) unexpectedly: \(reply.summary)")
    }

    /// The string fields of a hash reply (a RESP3 map, or a flat array from a script or RESP2).
    static func fields(_ reply: RESPValue) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in reply.pairs ?? [] {
            guard let name = pair.key.string, let value = pair.value.string ?? pair.value.integer.map({ String($0) })
            else { continue }
            fields[name] = value
        }
        return fields
    }

    /// Members and scores of `ZREVRANGE … WITHSCORES`: RESP3 `[[member, score], …]` or RESP2 flat pairs.
    static func scoredMembers(_ reply: RESPValue) throws -> [(String, Double)] {
        guard let elements = reply.elements else { throw Self.unexpected("ZREVRANGE", reply) }
        func score(_ value: RESPValue) -> Double? {
            if case .double(let d) = value.unattributed { return d }
            return value.string.flatMap { Double($0) }
        }
        var out: [(String, Double)] = []
        if elements.allSatisfy({ $0.elements != nil }) {
            for element in elements {
                guard let pair = element.elements, pair.count == 2, let member = pair[0].string,
                    let value = score(pair[1])
                else { throw Self.unexpected("ZREVRANGE", reply) }
                out.append((member, value))
            }
        } else {
            guard elements.count % 2 == 0 else { throw Self.unexpected("ZREVRANGE", reply) }
            for start in stride(from: 0, to: elements.count, by: 2) {
                guard let member = elements[start].string, let value = score(elements[start + 1]) else {
                    throw Self.unexpected("ZREVRANGE", reply)
                }
                out.append((member, value))
            }
        }
        return out
    }

    /// `text` cut to at most `bytes` UTF-8 bytes at a character boundary, with "…" when cut.
    static func bounded(_ text: String, bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var out = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            if used + size > bytes - 3 { break }
            out.append(character)
            used += size
        }
        return out + "…"
    }
}

/// The Valkey key names of one queue (see `CoordinatorScripts`).
struct QueueKeys: Sendable {
    let prefix: String

    init(_ queue: String) { self.prefix = "vf:{\(queue)}:" }

    /// The key set with `prefix` (as recorded in a claim).
    init(prefix: String) { self.prefix = prefix }

    /// Sub-queue `index` of `queue`: `vf:{Q#k}:`.
    init(shard queue: String, _ index: Int) { self.prefix = "vf:{\(queue)#\(index)}:" }

    func batch(_ id: String) -> String { self.prefix + "b:" + id }
    var ready: String { self.prefix + "ready" }
    var leases: String { self.prefix + "leases" }
    var delayed: String { self.prefix + "delayed" }
    var wake: String { self.prefix + "wake" }
    /// The queue's layout (`QueueLayout`); only the plain key set `vf:{Q}:` has one.
    var config: String { self.prefix + "config" }
    /// The zset holding exactly the batches in `state` (see `CoordinatorScripts`).
    func index(_ state: BatchState) -> String {
        switch state {
        case .processing: return self.leases
        case .retryWait: return self.delayed
        case .pending: return self.ready
        case .completed, .failed, .cancelled: return self.prefix + "idx:" + state.rawValue
        }
    }
}

/// One round of `waitForWork`: a BLPOP per group of wake lists, the first wake-up (or all timing out, or the
/// caller's cancellation) decides. BLPOPs still running after the decision finish on their own (within the
/// round's timeout) and push back any wake-up they took.
final class WakeRound: Sendable {
    enum Outcome: Sendable {
        case woken
        case timedOut
        case cancelled
        case failed(RESPError)
    }

    private struct State {
        var continuation: CheckedContinuation<Outcome, Never>?
        var outcome: Outcome?
        var running: Int
    }

    private let state: Mutex<State>

    private init(running: Int) { self.state = Mutex(State(continuation: nil, outcome: nil, running: running)) }

    static func run(groups: [[String]], round: Duration, valkey: ValkeyConnection) async -> Outcome {
        let wakeRound = WakeRound(running: groups.count)
        let milliseconds = max(10, RetryPolicy.milliseconds(round))
        let timeout = "\(milliseconds / 1000).\(String(1000 + milliseconds % 1000).dropFirst())"
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                guard wakeRound.install(continuation) else { return }
                for keys in groups {
                    Task {
                        let result = await Self.pop(keys, timeout: timeout, valkey: valkey)
                        await wakeRound.report(result, valkey: valkey)
                    }
                }
            }
        } onCancel: {
            _ = wakeRound.finish(.cancelled)
        }
    }

    /// Stores the continuation; false (and resumed at once) when the round was decided already (cancelled).
    private func install(_ continuation: CheckedContinuation<Outcome, Never>) -> Bool {
        let decided: Outcome? = self.state.withLock { state in
            if let outcome = state.outcome { return outcome }
            state.continuation = continuation
            return nil
        }
        if let decided {
            continuation.resume(returning: decided)
            return false
        }
        return true
    }

    /// Decides the round with `outcome` unless it was decided; true when this call decided it.
    private func finish(_ outcome: Outcome) -> Bool {
        let continuation: CheckedContinuation<Outcome, Never>?? = self.state.withLock { state in
            guard state.outcome == nil else { return .none }
            state.outcome = outcome
            defer { state.continuation = nil }
            return .some(state.continuation)
        }
        guard case .some(let waiting) = continuation else { return false }
        waiting?.resume(returning: outcome)
        return true
    }

    private func report(_ result: Result<String?, RESPError>, valkey: ValkeyConnection) async {
        switch result {
        case .success(let key?):
            if !self.finish(.woken) {
                // Nobody is waiting for this wake-up any more: give it back to the queue's other waiters.
                _ = try? await valkey.send(RESPCommand("RPUSH", key, "1"), key: key)
            }
        case .success(nil):
            let last = self.state.withLock { state in
                state.running -= 1
                return state.running == 0
            }
            if last { _ = self.finish(.timedOut) }
        case .failure(let error):
            _ = self.finish(.failed(error))
        }
    }

    /// BLPOP on `keys` (one slot) on a dedicated connection: the key popped, or nil on timeout.
    private static func pop(_ keys: [String], timeout: String, valkey: ValkeyConnection) async -> Result<
        String?, RESPError
    > {
        do throws(RESPError) {
            let reply = try await valkey.withDedicatedConnection(forKey: keys[0]) {
                connection throws(RESPError) in
                try await connection.send(RESPCommand("BLPOP", arguments: keys + [timeout]))
            }
            if reply.isNull { return .success(nil) }
            guard let parts = reply.elements, parts.count == 2, let key = parts[0].string else {
                return .failure(
                    .unexpectedReply(command: "BLPOP", expected: "[key, value] or null", found: reply.summary))
            }
            return .success(key)
        } catch {
            return .failure(error)
        }
    }
}
