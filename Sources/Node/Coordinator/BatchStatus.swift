/// The state of a batch in the coordinator (the contract's `status` values).
public enum BatchState: String, Sendable, CaseIterable {
    case pending
    case processing
    case retryWait = "retry_wait"
    case completed
    case failed
    case cancelled

    /// True for completed, failed and cancelled: nothing happens to the batch any more (except retry).
    public var isFinished: Bool {
        switch self {
        case .completed, .failed, .cancelled: return true
        case .pending, .processing, .retryWait: return false
        }
    }
}

/// Everything the coordinator knows about one batch.
public struct BatchStatus: Sendable, Equatable {
    public var key: BatchKey
    public var state: BatchState
    /// Claims so far: the claim that starts attempt k sets it to k.
    public var attempts: Int
    public var maxAttempts: Int
    public var lastError: String?
    /// The key the result was stored under (`QUEUE/ID/result`), once completed with one.
    public var resultKey: String?
    /// The Flight location holding the input (`grpc://HOST:PORT`).
    public var location: String
    /// The worker of the current (or last) attempt.
    public var worker: String?
    public var createdAtMilliseconds: Int64
    public var updatedAtMilliseconds: Int64
    public var rows: Int
    public var bytes: Int
    /// When the retry becomes due (retry_wait only).
    public var dueAtMilliseconds: Int64?

    /// A status with every field given.
    public init(
        key: BatchKey, state: BatchState, attempts: Int, maxAttempts: Int, lastError: String?, resultKey: String?,
        location: String, worker: String?, createdAtMilliseconds: Int64, updatedAtMilliseconds: Int64, rows: Int,
        bytes: Int, dueAtMilliseconds: Int64?
    ) {
        self.key = key
        self.state = state
        self.attempts = attempts
        self.maxAttempts = maxAttempts
        self.lastError = lastError
        self.resultKey = resultKey
        self.location = location
        self.worker = worker
        self.createdAtMilliseconds = createdAtMilliseconds
        self.updatedAtMilliseconds = updatedAtMilliseconds
        self.rows = rows
        self.bytes = bytes
        self.dueAtMilliseconds = dueAtMilliseconds
    }

    /// The contract's status object as one JSON object: `{"key","queue","status","attempts","max_attempts",
    /// "last_error","result_key","location","worker","created_at","updated_at","rows","bytes"}`; times RFC 3339
    /// UTC with milliseconds (`2026-12-01T08:00:00.123Z`); absent values as null.
    public var json: String {
        func optional(_ text: String?) -> String { text.map(JSONText.quote) ?? "null" }
        return "{\"key\":\(JSONText.quote(self.key.description)),\"queue\":\(JSONText.quote(self.key.queue)),"
            + "\"status\":\"\(self.state.rawValue)\",\"attempts\":\(self.attempts),"
            + "\"max_attempts\":\(self.maxAttempts),\"last_error\":\(optional(self.lastError)),"
            + "\"result_key\":\(optional(self.resultKey)),\"location\":\(JSONText.quote(self.location)),"
            + "\"worker\":\(optional(self.worker)),"
            + "\"created_at\":\"\(RFC3339.format(milliseconds: self.createdAtMilliseconds))\","
            + "\"updated_at\":\"\(RFC3339.format(milliseconds: self.updatedAtMilliseconds))\","
            + "\"rows\":\(self.rows),\"bytes\":\(self.bytes)}"
    }

    /// A status from the fields of a batch hash (`HGETALL`). Nil when the hash is empty or has no valid status.
    init?(key: BatchKey, fields: [String: String]) {
        guard let raw = fields["status"], let state = BatchState(rawValue: raw) else { return nil }
        func int(_ name: String) -> Int { fields[name].flatMap { Int($0) } ?? 0 }
        func int64(_ name: String) -> Int64 { fields[name].flatMap { Int64($0) } ?? 0 }
        self.init(
            key: key, state: state, attempts: int("attempts"), maxAttempts: int("max_attempts"),
            lastError: fields["last_error"], resultKey: fields["result_key"], location: fields["location"] ?? "",
            worker: fields["worker"], createdAtMilliseconds: int64("created_at"),
            updatedAtMilliseconds: int64("updated_at"), rows: int("rows"), bytes: int("bytes"),
            dueAtMilliseconds: state == .retryWait ? fields["due_at"].flatMap { Int64($0) } : nil)
    }
}

/// A claimed batch: what a worker needs to fetch, process and finish it.
public struct BatchClaim: Sendable, Equatable {
    public let key: BatchKey
    /// The fencing token of this attempt; only it may extend, complete, fail or release the batch.
    public let token: String
    /// 1-based attempt number (the batch's `attempts` after this claim).
    public let attempt: Int
    public let location: String
    public let maxAttempts: Int
    public let rows: Int
    public let bytes: Int
    /// How long the batch waited for this claim since it became pending (Valkey's clock), in milliseconds.
    public let waitedMilliseconds: Int64
    /// The key prefix of the (sub-)queue it was claimed from (`vf:{Q#k}:`); nil: located from the key.
    var queuePrefix: String?

    /// A claim with every field given (the coordinator makes them; tests and workers may too).
    public init(key: BatchKey, token: String, attempt: Int, location: String, maxAttempts: Int, rows: Int, bytes: Int,
                waitedMilliseconds: Int64 = 0) {
        self.waitedMilliseconds = waitedMilliseconds
        self.key = key
        self.token = token
        self.attempt = attempt
        self.location = location
        self.maxAttempts = maxAttempts
        self.rows = rows
        self.bytes = bytes
    }
}

/// The answer to a fenced call (extend, complete, release).
public enum FenceResult: Sendable, Equatable {
    case accepted
    /// The token is no longer current: the batch was reclaimed, cancelled or finished.
    case stale
    /// No such batch (deleted or expired).
    case notFound
}

/// The answer to `Coordinator.fail`.
public enum FailOutcome: Sendable, Equatable {
    /// The batch waits in retry_wait until this time (Unix ms).
    case retryScheduled(dueAtMilliseconds: Int64)
    /// The batch failed for good (permanent error or no attempts left).
    case failed
    case stale
    case notFound
}

/// How often and how soon a failed batch is tried again.
public struct RetryPolicy: Sendable, Equatable {
    public var maxAttempts: Int = 3
    public var base: Duration = .seconds(1)
    public var max: Duration = .seconds(60)

    /// A policy; defaults are the contract's (3 attempts, 1 s base, 60 s cap).
    public init(maxAttempts: Int = 3, base: Duration = .seconds(1), max: Duration = .seconds(60)) {
        self.maxAttempts = maxAttempts
        self.base = base
        self.max = max
    }

    /// The wait after attempt `attempt` (1-based) failed: `min(max, base × 2^(attempt−1))` times a random
    /// jitter factor in [0.5, 1.0) (so concurrent failures spread out and the cap is never exceeded).
    /// Attempts below 1 count as 1; negative durations count as zero.
    public func delay(afterAttempt attempt: Int) -> Duration {
        let full = Self.milliseconds(self.fullDelay(afterAttempt: attempt))
        return .milliseconds(Int64((Double(full) * Double.random(in: 0.5..<1.0)).rounded(.down)))
    }

    /// `min(max, base × 2^(attempt−1))` without jitter.
    func fullDelay(afterAttempt attempt: Int) -> Duration {
        let base = Swift.max(Duration.zero, self.base)
        let cap = Swift.max(Duration.zero, self.max)
        let exponent = Swift.min(Swift.max(attempt, 1) - 1, 40)
        let (scaled, overflow) = Self.milliseconds(base).multipliedReportingOverflow(by: Int64(1) << exponent)
        if overflow { return cap }
        return Swift.min(cap, .milliseconds(scaled))
    }

    /// Whole milliseconds of `duration` (negative → 0, huge → Int64.max / 1000).
    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        guard seconds < Int64.max / 1000 - 1 else { return Int64.max / 1000 }
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// What one housekeeping pass did.
public struct HousekeepingReport: Sendable, Equatable {
    /// Due retries moved back to pending.
    public var promoted: Int
    /// Expired leases taken away (each a failed attempt).
    public var reaped: Int
    /// Of `reaped`, those that had no attempts left and failed.
    public var failedByReap: Int
    /// Finished batches dropped after the retention.
    public var expired: Int

    /// A report with the given counts (all zero by default).
    public init(promoted: Int = 0, reaped: Int = 0, failedByReap: Int = 0, expired: Int = 0) {
        self.promoted = promoted
        self.reaped = reaped
        self.failedByReap = failedByReap
        self.expired = expired
    }

    static func + (lhs: HousekeepingReport, rhs: HousekeepingReport) -> HousekeepingReport {
        HousekeepingReport(
            promoted: lhs.promoted + rhs.promoted, reaped: lhs.reaped + rhs.reaped,
            failedByReap: lhs.failedByReap + rhs.failedByReap, expired: lhs.expired + rhs.expired)
    }
}
