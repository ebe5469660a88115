import Foundation
import Glibc
import Node
import RESP
import Synchronization
import Testing

/// A lock-protected value that tasks of a test share.
final class CoordinatorShared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { self.storage = Mutex(value) }
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R { self.storage.withLock { body(&$0) } }
    var value: Value { self.storage.withLock { $0 } }
}

/// Shared steps of the coordinator suites (standalone and cluster).
enum CoordinatorChecks {
    static let location = "grpc://127.0.0.1:8815"
    static let quick = RetryPolicy(maxAttempts: 3, base: .milliseconds(1), max: .milliseconds(5))
    /// `quick` with the claiming worker's `--max-attempts` set to `maxAttempts` (it replaces the registered one).
    static func quick(maxAttempts: Int) -> RetryPolicy {
        RetryPolicy(maxAttempts: maxAttempts, base: .milliseconds(1), max: .milliseconds(5))
    }

    static func key(_ queue: String, _ id: String) throws -> BatchKey { try BatchKey(queue: queue, id: id) }

    static func withCoordinator<T: Sendable>(
        retention: Duration = .seconds(7 * 86400), _ body: (Coordinator) async throws -> T
    ) async throws -> T {
        try await withValkeyServer { url in
            let valkey = try await ValkeyConnection.connect(url, clientName: "coordinator-tests")
            defer { valkey.close() }
            return try await body(Coordinator(valkey: valkey, retention: retention))
        }
    }

    /// Register → claim → extend → complete, with every status on the way, on `queue`.
    static func lifecycle(_ coordinator: Coordinator, queue: String) async throws {
        let key = try Self.key(queue, "life-1")
        let (registered, created) = try await coordinator.register(
            key, location: Self.location, rows: 10, bytes: 800, maxAttempts: 3)
        #expect(created)
        #expect(registered.state == .pending)
        #expect(registered.attempts == 0 && registered.maxAttempts == 3 && registered.rows == 10)
        #expect(try await coordinator.status(key) == registered)

        let claims = try await coordinator.claim(
            queue: queue, worker: "w1", limit: 5, lease: .seconds(30), policy: RetryPolicy())
        #expect(claims.count == 1)
        let claim = try #require(claims.first)
        #expect(claim.key == key && claim.attempt == 1 && claim.location == Self.location)
        #expect(claim.rows == 10 && claim.bytes == 800 && claim.maxAttempts == 3)
        let processing = try #require(try await coordinator.status(key))
        #expect(processing.state == .processing && processing.attempts == 1 && processing.worker == "w1")
        #expect(try await coordinator.isCurrent(claim))
        #expect(try await coordinator.extend(claim, lease: .seconds(60)) == .accepted)
        #expect(try await coordinator.stats()[queue]?[.processing] == 1)

        #expect(try await coordinator.complete(claim, resultKey: key.resultKey) == .accepted)
        let done = try #require(try await coordinator.status(key))
        #expect(done.state == .completed && done.resultKey == "\(queue)/life-1/result" && done.attempts == 1)
        #expect(done.createdAtMilliseconds == registered.createdAtMilliseconds)
        #expect(done.updatedAtMilliseconds >= processing.updatedAtMilliseconds)
        // A finished batch answers stale to its old token.
        #expect(try await coordinator.complete(claim, resultKey: nil) == .stale)
        #expect(try await coordinator.extend(claim, lease: .seconds(1)) == .stale)
        #expect(try await !coordinator.isCurrent(claim))

        let stats = try #require(try await coordinator.stats()[queue])
        #expect(stats == [.pending: 0, .processing: 0, .retryWait: 0, .completed: 1, .failed: 0, .cancelled: 0])
        #expect(try await coordinator.list(queue: queue, state: .completed, limit: 10).map(\.key) == [key])
        #expect(try await coordinator.list(queue: queue, state: .pending, limit: 10).isEmpty)
        #expect(try await coordinator.queues().contains(queue))

        // The status object, as the contract spells it.
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(done.json.utf8)) as? [String: Any])
        #expect(
            Set(object.keys) == [
                "key", "queue", "status", "attempts", "max_attempts", "last_error", "result_key", "location",
                "worker", "created_at", "updated_at", "rows", "bytes",
            ])
        #expect(object["key"] as? String == "\(queue)/life-1" && object["status"] as? String == "completed")
        #expect(object["last_error"] is NSNull)
        let createdText = try #require(object["created_at"] as? String)
        #expect(createdText.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let parsed = try #require(formatter.date(from: createdText))
        #expect(Int64((parsed.timeIntervalSince1970 * 1000).rounded()) == done.createdAtMilliseconds)
    }

    /// A waiter on `queues` wakes when `register` runs on `target`.
    static func registerWakesWaiter(_ coordinator: Coordinator, queues: [String], target: String) async throws {
        let waiter = Task { try await coordinator.waitForWork(queues: queues, timeout: .seconds(20)) }
        // Let the waiter reach its BLPOP before registering (a wake-up pushed earlier is kept anyway).
        try await Task.sleep(for: .milliseconds(50))
        _ = try await coordinator.register(
            try Self.key(target, "wake-\(UUID().uuidString.prefix(8))"), location: Self.location, rows: 1, bytes: 1,
            maxAttempts: 3)
        #expect(try await waiter.value)
    }
}

@Suite(.serialized) struct CoordinatorTests {
    typealias Checks = CoordinatorChecks

    @Test func lifecycle() async throws {
        try await Checks.withCoordinator { coordinator in
            try await Checks.lifecycle(coordinator, queue: "life")
        }
    }

    @Test func claimsUpToNInOrderWithUniqueTokens() async throws {
        try await Checks.withCoordinator { coordinator in
            for index in 0..<10 {
                _ = try await coordinator.register(
                    try Checks.key("q", "b\(index)"), location: Checks.location, rows: index, bytes: 1, maxAttempts: 3)
            }
            #expect(try await coordinator.list(queue: "q", state: .pending, limit: 3).count == 3)
            #expect(try await coordinator.list(queue: "q", state: .pending, limit: 100).count == 10)
            let first = try await coordinator.claim(
                queue: "q", worker: "w", limit: 4, lease: .seconds(30), policy: RetryPolicy())
            #expect(first.map(\.key.id) == ["b0", "b1", "b2", "b3"])
            #expect(
                Set(try await coordinator.list(queue: "q", state: .processing, limit: 100).map(\.key.id))
                    == ["b0", "b1", "b2", "b3"])
            #expect(try await coordinator.list(queue: "q", state: .pending, limit: 100).count == 6)
            let everything = try await coordinator.list(queue: nil, state: nil, limit: 100)
            #expect(everything.count == 10)
            #expect(
                zip(everything, everything.dropFirst()).allSatisfy {
                    $0.updatedAtMilliseconds >= $1.updatedAtMilliseconds
                })
            // Cancelling and deleting pending batches keeps the pending count exact.
            _ = try await coordinator.cancel(try Checks.key("q", "b9"))
            _ = try await coordinator.delete(try Checks.key("q", "b8"))
            #expect(try await coordinator.stats()["q"]?[.pending] == 4)
            _ = try await coordinator.retry(try Checks.key("q", "b9"))
            #expect(first.map(\.rows) == [0, 1, 2, 3])
            let rest = try await coordinator.claim(
                queue: "q", worker: "w", limit: 100, lease: .seconds(30), policy: RetryPolicy())
            #expect(rest.map(\.key.id) == ["b4", "b5", "b6", "b7", "b9"])
            #expect(Set((first + rest).map(\.token)).count == 9)
            #expect(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: RetryPolicy()
                ).isEmpty)
            #expect(
                try await coordinator.claim(
                    queue: "other", worker: "w", limit: 0, lease: .seconds(30), policy: RetryPolicy()
                ).isEmpty)
            #expect(try await coordinator.stats()["q"]?[.processing] == 9)
            #expect(try await coordinator.stats()["q"]?[.pending] == 0)
        }
    }

    @Test func registerIsIdempotentByKey() async throws {
        try await Checks.withCoordinator { coordinator in
            let key = try Checks.key("q", "same")
            let (first, created) = try await coordinator.register(
                key, location: Checks.location, rows: 5, bytes: 50, maxAttempts: 2)
            #expect(created)
            let (second, createdAgain) = try await coordinator.register(
                key, location: "grpc://elsewhere:1", rows: 99, bytes: 99, maxAttempts: 9)
            #expect(!createdAgain)
            #expect(second == first)
            let claims = try await coordinator.claim(
                queue: "q", worker: "w", limit: 10, lease: .seconds(30), policy: RetryPolicy())
            #expect(claims.count == 1)
            let (third, createdThird) = try await coordinator.register(
                key, location: Checks.location, rows: 5, bytes: 50, maxAttempts: 2)
            #expect(!createdThird && third.state == .processing && third.attempts == 1)
            #expect(try await coordinator.stats()["q"]?[.pending] == 0)
            // Bad arguments are refused before Valkey sees them.
            await #expect(throws: NodeError.self) {
                _ = try await coordinator.register(key.resultKey, location: "", rows: 0, bytes: 0, maxAttempts: 1)
            }
            await #expect(throws: NodeError.self) {
                _ = try await coordinator.register(key, location: "", rows: 0, bytes: 0, maxAttempts: 0)
            }
            await #expect(throws: NodeError.self) {
                _ = try await coordinator.claim(
                    queue: "bad/queue", worker: "w", limit: 1, lease: .seconds(1), policy: RetryPolicy())
            }
        }
    }

    @Test func staleTokensAreRejectedAfterReapAndReclaimAndAfterCancel() async throws {
        try await Checks.withCoordinator { coordinator in
            let key = try Checks.key("q", "fenced")
            _ = try await coordinator.register(key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
            let old = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "slow", limit: 1, lease: .milliseconds(50), policy: Checks.quick
                ).first)
            // The lease runs out: reaping counts a failed attempt, then the retry becomes due and is promoted.
            var reaped = 0
            try await ValkeyTestServers.waitUntil("the lease is reaped", timeout: .seconds(10)) {
                reaped += try await coordinator.housekeeping(queue: "q").reaped
                return reaped == 1
            }
            let waiting = try #require(try await coordinator.status(key))
            #expect(waiting.state == .retryWait || waiting.state == .pending)
            #expect(waiting.attempts == 1)
            #expect(waiting.lastError == "lease expired: worker slow stopped extending its lease")
            var new: BatchClaim?
            try await ValkeyTestServers.waitUntil("the retry is claimable", timeout: .seconds(10)) {
                _ = try await coordinator.housekeeping(queue: "q")
                new = try await coordinator.claim(
                    queue: "q", worker: "fast", limit: 1, lease: .seconds(30), policy: Checks.quick
                ).first
                return new != nil
            }
            let current = try #require(new)
            #expect(current.attempt == 2 && current.token != old.token)
            #expect(try await coordinator.extend(old, lease: .seconds(30)) == .stale)
            #expect(try await coordinator.complete(old, resultKey: nil) == .stale)
            #expect(try await coordinator.fail(old, error: "late", retryDelay: .zero, permanent: true) == .stale)
            #expect(try await coordinator.release(old) == .stale)
            #expect(try await !coordinator.isCurrent(old))
            #expect(try await coordinator.isCurrent(current))
            #expect(try await coordinator.complete(current, resultKey: nil) == .accepted)

            // Cancel makes a processing batch's token stale.
            let other = try Checks.key("q", "cancelled")
            _ = try await coordinator.register(other, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
            let claim = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: Checks.quick
                ).first)
            #expect(try await coordinator.cancel(other)?.state == .cancelled)
            #expect(try await coordinator.complete(claim, resultKey: nil) == .stale)
            #expect(try await coordinator.extend(claim, lease: .seconds(1)) == .stale)
            #expect(try await coordinator.fail(claim, error: "x", retryDelay: .zero, permanent: false) == .stale)
            // Deleted: not found.
            _ = try await coordinator.delete(other)
            #expect(try await coordinator.complete(claim, resultKey: nil) == .notFound)
            #expect(try await coordinator.extend(claim, lease: .seconds(1)) == .notFound)
            let stats = try #require(try await coordinator.stats()["q"])
            #expect(stats[.completed] == 1 && stats[.processing] == 0 && stats[.cancelled] == 0)
        }
    }

    @Test func retryWaitsForItsDueTimeAndPromoteWakesAWaiter() async throws {
        try await Checks.withCoordinator { coordinator in
            let key = try Checks.key("q", "retried")
            _ = try await coordinator.register(key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
            let claim = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: RetryPolicy()
                ).first)
            let delay = Duration.seconds(3)
            let failedAt = ContinuousClock.now
            let outcome = try await coordinator.fail(claim, error: "boom", retryDelay: delay, permanent: false)
            guard case .retryScheduled(let due) = outcome else {
                Issue.record("expected a retry, got \(outcome)")
                return
            }
            let waiting = try #require(try await coordinator.status(key))
            #expect(waiting.state == .retryWait && waiting.lastError == "boom" && waiting.dueAtMilliseconds == due)
            #expect(due == waiting.updatedAtMilliseconds + 3000)
            // Not due yet: housekeeping leaves it, and nothing can be claimed — when both ran before the due time
            // (a machine too loaded to get here within it may rightly have promoted or claimed it already).
            let early = try await coordinator.housekeeping(queue: "q").promoted
            let earlyClaims = try await coordinator.claim(
                queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: RetryPolicy())
            if ContinuousClock.now - failedAt < delay {
                #expect(early == 0 && earlyClaims.isEmpty)
            } else if let late = earlyClaims.first {
                #expect(late.attempt == 2)
                return
            }

            // A waiter for work wakes at the promotion (unless it happened already).
            let waiter =
                early == 0 ? Task { try await coordinator.waitForWork(queues: ["q"], timeout: .seconds(20)) } : nil
            var promoted = early
            try await ValkeyTestServers.waitUntil("the retry is promoted", timeout: .seconds(15)) {
                promoted += try await coordinator.housekeeping(queue: "q").promoted
                return promoted == 1
            }
            if let waiter { #expect(try await waiter.value) }
            let pending = try #require(try await coordinator.status(key))
            #expect(pending.state == .pending && pending.dueAtMilliseconds == nil)
            #expect(pending.updatedAtMilliseconds >= due)
            let again = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: RetryPolicy()
                ).first)
            #expect(again.attempt == 2)
        }
    }

    @Test func maxAttemptsAndPermanentErrorsFailTheBatch() async throws {
        try await Checks.withCoordinator { coordinator in
            let key = try Checks.key("q", "doomed")
            _ = try await coordinator.register(key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 2)
            let first = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: Checks.quick(maxAttempts: 2)
                )
                .first)
            guard
                case .retryScheduled = try await coordinator.fail(
                    first, error: "first", retryDelay: .zero, permanent: false)
            else {
                Issue.record("the first failure should retry")
                return
            }
            #expect(try await coordinator.housekeeping(queue: "q").promoted == 1)
            let second = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: Checks.quick(maxAttempts: 2)
                )
                .first)
            #expect(second.attempt == 2)
            #expect(try await coordinator.fail(second, error: "second", retryDelay: .zero, permanent: false) == .failed)
            let failed = try #require(try await coordinator.status(key))
            #expect(failed.state == .failed && failed.lastError == "second" && failed.attempts == 2)

            // A permanent error fails at once, whatever attempts remain.
            let gone = try Checks.key("q", "gone")
            _ = try await coordinator.register(gone, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 5)
            let claim = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: Checks.quick(maxAttempts: 5)
                )
                .first)
            #expect(
                try await coordinator.fail(
                    claim, error: "input data gone", retryDelay: .seconds(1), permanent: true) == .failed)
            #expect(try await coordinator.status(gone)?.lastError == "input data gone")

            // An expired lease on the last attempt fails the batch with the lease error.
            let abandoned = try Checks.key("q", "abandoned")
            _ = try await coordinator.register(abandoned, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 1)
            _ = try await coordinator.claim(
                queue: "q", worker: "lost-worker", limit: 1, lease: .milliseconds(20), policy: Checks.quick(maxAttempts: 1))
            var report = HousekeepingReport()
            try await ValkeyTestServers.waitUntil("the lease is reaped", timeout: .seconds(10)) {
                let pass = try await coordinator.housekeeping(queue: "q")
                report.reaped += pass.reaped
                report.failedByReap += pass.failedByReap
                return report.reaped == 1
            }
            #expect(report.failedByReap == 1)
            let status = try #require(try await coordinator.status(abandoned))
            #expect(status.state == .failed && status.attempts == 1)
            #expect(status.lastError == "lease expired: worker lost-worker stopped extending its lease")
            #expect(try await coordinator.stats()["q"]?[.failed] == 3)

            // A very long error is cut.
            let long = try Checks.key("q", "long")
            _ = try await coordinator.register(long, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 1)
            let longClaim = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: Checks.quick(maxAttempts: 1)
                )
                .first)
            _ = try await coordinator.fail(
                longClaim, error: String(repeating: "é", count: 10_000), retryDelay: .zero, permanent: false)
            let cut = try #require(try await coordinator.status(long)?.lastError)
            #expect(cut.utf8.count <= Coordinator.maxErrorBytes && cut.hasSuffix("…"))
        }
    }

    @Test func releaseGivesTheBatchBackWithoutCountingTheAttempt() async throws {
        try await Checks.withCoordinator { coordinator in
            let key = try Checks.key("q", "released")
            _ = try await coordinator.register(key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
            let claim = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 1, lease: .seconds(30), policy: Checks.quick
                )
                .first)
            #expect(try await coordinator.release(claim) == .accepted)
            let status = try #require(try await coordinator.status(key))
            #expect(status.state == .pending && status.attempts == 0 && status.worker == nil)
            #expect(try await coordinator.release(claim) == .stale)
            let again = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w2", limit: 1, lease: .seconds(30), policy: Checks.quick
                )
                .first)
            #expect(again.attempt == 1 && again.key == key)
        }
    }

    @Test func retryCancelAndDeleteRules() async throws {
        try await Checks.withCoordinator { coordinator in
            let key = try Checks.key("q", "managed")
            _ = try await coordinator.register(key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
            // Only failed or cancelled batches can be retried.
            await #expect(throws: NodeError.self) { _ = try await coordinator.retry(key) }
            #expect(try await coordinator.retry(try Checks.key("q", "unknown")) == nil)
            #expect(try await coordinator.cancel(try Checks.key("q", "unknown")) == nil)
            #expect(try await coordinator.delete(try Checks.key("q", "unknown")) == nil)

            let cancelled = try #require(try await coordinator.cancel(key))
            #expect(cancelled.state == .cancelled)
            do {
                _ = try await coordinator.cancel(key)
                Issue.record("cancelling a cancelled batch should fail")
            } catch let error as NodeError {
                guard case .failedPrecondition = error else {
                    Issue.record("expected failedPrecondition, got \(error)")
                    return
                }
            }
            // A cancelled batch is no longer claimable.
            #expect(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 5, lease: .seconds(30), policy: Checks.quick
                ).isEmpty)
            let retried = try #require(try await coordinator.retry(key))
            #expect(retried.state == .pending && retried.attempts == 0)
            let claims = try await coordinator.claim(
                queue: "q", worker: "w", limit: 5, lease: .seconds(30), policy: Checks.quick)
            #expect(claims.count == 1 && claims.first?.attempt == 1)
            let claim = try #require(claims.first)
            #expect(try await coordinator.fail(claim, error: "bad", retryDelay: .zero, permanent: true) == .failed)
            let again = try #require(try await coordinator.retry(key))
            #expect(again.state == .pending && again.attempts == 0 && again.lastError == "bad")
            // A retry_wait batch can be cancelled; a completed one cannot.
            let next = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 5, lease: .seconds(30), policy: Checks.quick
                )
                .first)
            _ = try await coordinator.fail(next, error: "later", retryDelay: .seconds(60), permanent: false)
            #expect(try await coordinator.cancel(key)?.state == .cancelled)
            #expect(try await coordinator.housekeeping(queue: "q").promoted == 0)
            _ = try await coordinator.retry(key)
            let last = try #require(
                try await coordinator.claim(
                    queue: "q", worker: "w", limit: 5, lease: .seconds(30), policy: Checks.quick
                )
                .first)
            #expect(try await coordinator.complete(last, resultKey: nil) == .accepted)
            await #expect(throws: NodeError.self) { _ = try await coordinator.cancel(key) }
            await #expect(throws: NodeError.self) { _ = try await coordinator.retry(key) }

            let deleted = try #require(try await coordinator.delete(key))
            #expect(deleted.state == .completed)
            #expect(try await coordinator.status(key) == nil)
            #expect(try await coordinator.delete(key) == nil)
            let stats = try #require(try await coordinator.stats()["q"])
            #expect(stats.values.allSatisfy { $0 == 0 } && stats.count == BatchState.allCases.count)
            // Register again after delete: a fresh batch.
            #expect(
                try await coordinator.register(
                    key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3
                ).created)
        }
    }

    @Test func statsStayExactUnderConcurrentWorkers() async throws {
        try await Checks.withCoordinator { coordinator in
            let total = 2000
            let completed = CoordinatorShared<[String: Int]>([:])
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await withThrowingTaskGroup(of: Void.self) { registrations in
                        for part in 0..<4 {
                            registrations.addTask {
                                for index in stride(from: part, to: total, by: 4) {
                                    _ = try await coordinator.register(
                                        try Checks.key("busy", "b\(index)"), location: Checks.location, rows: 1,
                                        bytes: 1, maxAttempts: 3)
                                }
                            }
                        }
                        try await registrations.waitForAll()
                    }
                }
                for worker in 0..<8 {
                    group.addTask {
                        let clock = ContinuousClock()
                        let deadline = clock.now.advanced(by: .seconds(120))
                        while completed.update({ $0.count }) < total, clock.now < deadline {
                            let claims = try await coordinator.claim(
                                queue: "busy", worker: "w\(worker)", limit: 16, lease: .seconds(60),
                                policy: RetryPolicy())
                            if claims.isEmpty {
                                _ = try await coordinator.waitForWork(queues: ["busy"], timeout: .milliseconds(200))
                                continue
                            }
                            for claim in claims {
                                #expect(try await coordinator.complete(claim, resultKey: nil) == .accepted)
                                completed.update { $0[claim.key.id, default: 0] += 1 }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let counts = completed.value
            #expect(counts.count == total)
            #expect(counts.values.allSatisfy { $0 == 1 })
            let stats = try #require(try await coordinator.stats()["busy"])
            #expect(
                stats == [.pending: 0, .processing: 0, .retryWait: 0, .completed: total, .failed: 0, .cancelled: 0])
            let listed = try await coordinator.list(queue: "busy", state: .completed, limit: 50_000)
            #expect(listed.count == total)
            #expect(
                zip(listed, listed.dropFirst()).allSatisfy {
                    $0.updatedAtMilliseconds >= $1.updatedAtMilliseconds
                })
            #expect(try await coordinator.list(queue: nil, state: nil, limit: 10).count == 10)
        }
    }

    @Test func finishedBatchesExpireAfterTheRetention() async throws {
        let retention = Duration.seconds(1)
        try await Checks.withCoordinator(retention: retention) { coordinator in
            var keys: [BatchKey] = []
            for index in 0..<4 {
                let key = try Checks.key("ret", "b\(index)")
                keys.append(key)
                _ = try await coordinator.register(key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 1)
            }
            let claims = try await coordinator.claim(
                queue: "ret", worker: "w", limit: 2, lease: .seconds(30), policy: RetryPolicy())
            let firstFinish = ContinuousClock.now
            #expect(try await coordinator.complete(claims[0], resultKey: nil) == .accepted)
            #expect(try await coordinator.fail(claims[1], error: "x", retryDelay: .zero, permanent: true) == .failed)
            _ = try await coordinator.cancel(keys[2])
            // Within the retention of the first finish, everything is still there (on a machine too loaded to get
            // here within it, any count is correct).
            let early = try await coordinator.housekeeping(queue: "ret").expired
            if ContinuousClock.now - firstFinish < retention { #expect(early == 0) }
            var expired = early
            try await ValkeyTestServers.waitUntil("finished batches expire", timeout: .seconds(20)) {
                expired += try await coordinator.housekeeping(queue: "ret").expired
                return expired >= 3
            }
            #expect(expired == 3)
            for key in keys.prefix(3) { #expect(try await coordinator.status(key) == nil) }
            #expect(try await coordinator.status(keys[3])?.state == .pending)
            let stats = try #require(try await coordinator.stats()["ret"])
            #expect(stats == [.pending: 1, .processing: 0, .retryWait: 0, .completed: 0, .failed: 0, .cancelled: 0])
        }
    }

    @Test func waitForWorkWakesWithinMillisecondsOfARegister() async throws {
        try await withValkeyServer { url in
            let valkey = try await ValkeyConnection.connect(url)
            defer { valkey.close() }
            let coordinator = Coordinator(valkey: valkey)
            let admin = try ValkeyTestServers.adminClient(url)
            defer { admin.close() }
            let clock = ContinuousClock()
            var latencies: [Duration] = []
            for index in 0..<200 {
                let waiter = Task { () -> (Bool, ContinuousClock.Instant) in
                    let woken = try await coordinator.waitForWork(queues: ["idle", "other"], timeout: .seconds(10))
                    return (woken, ContinuousClock.now)
                }
                try await ValkeyTestServers.waitUntil("the waiter blocks", timeout: .seconds(10)) {
                    (try await admin.send("INFO", "clients").string ?? "").contains("blocked_clients:1\r")
                }
                let start = clock.now
                _ = try await coordinator.register(
                    try Checks.key("idle", "b\(index)"), location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
                let (woken, end) = try await waiter.value
                #expect(woken)
                latencies.append(start.duration(to: end))
                _ = try await coordinator.claim(
                    queue: "idle", worker: "w", limit: 1, lease: .seconds(30), policy: RetryPolicy())
            }
            latencies.sort()
            let p50 = latencies[latencies.count / 2]
            let p99 = latencies[latencies.count * 99 / 100]
            print("waitForWork wake after register: p50 \(p50), p99 \(p99), max \(latencies.last ?? .zero)")
            // Every waiter was woken by the registration (above). Timing is the benchmark's job
            // (`valkeyflight bench pipeline` prints the idle-pool p99); here only a bound that a polling
            // implementation (or none) would miss, on the median so one stall of a loaded machine does not count.
            #expect(p50 < .milliseconds(100), "median wake \(p50)")

            // Nothing registered: false after the timeout. Cancelled: false promptly.
            let quiet = clock.now
            #expect(try await !coordinator.waitForWork(queues: ["silent"], timeout: .milliseconds(300)))
            #expect(quiet.duration(to: clock.now) >= .milliseconds(290))
            let cancelled = Task { try await coordinator.waitForWork(queues: ["silent"], timeout: .seconds(30)) }
            try await ValkeyTestServers.waitUntil("the waiter blocks", timeout: .seconds(10)) {
                (try await admin.send("INFO", "clients").string ?? "").contains("blocked_clients:1\r")
            }
            let cancelStart = clock.now
            cancelled.cancel()
            #expect(try await !cancelled.value)
            #expect(cancelStart.duration(to: clock.now) < .seconds(2))
            // The wake-up a cancelled waiter's BLPOP may still take is pushed back: a new waiter gets it.
            _ = try await coordinator.register(
                try Checks.key("silent", "late"), location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
            #expect(try await coordinator.waitForWork(queues: ["silent"], timeout: .seconds(5)))
        }
    }

    @Test func shardedQueueSpreadsOverSubQueuesAndStillReadsAsOne() async throws {
        try await withValkeyServer { url in
            let valkey = try await ValkeyConnection.connect(url)
            defer { valkey.close() }
            let coordinator = Coordinator(valkey: valkey, queueShards: ["big": 4])
            try await Checks.lifecycle(coordinator, queue: "big")
            for index in 0..<40 {
                _ = try await coordinator.register(
                    try Checks.key("big", "b\(index)"), location: Checks.location, rows: 1, bytes: 1, maxAttempts: 1)
            }
            var lengths: [Int] = []
            for shard in 0..<4 {
                let key = "vf:{big#\(shard)}:ready"
                lengths.append(Int(try await valkey.send(RESPCommand("LLEN", key), key: key).integer ?? -1))
            }
            #expect(lengths.reduce(0, +) == 40 && lengths.filter { $0 > 0 }.count >= 2)
            #expect(try await coordinator.stats()["big"]?[.pending] == 40)
            #expect(try await coordinator.queues() == ["big"])
            #expect(try await coordinator.list(queue: "big", state: .pending, limit: 100).count == 40)

            let waiter = Task { try await coordinator.waitForWork(queues: ["big"], timeout: .seconds(20)) }
            let claims = try await coordinator.claim(
                queue: "big", worker: "w", limit: 35, lease: .milliseconds(30), policy: Checks.quick(maxAttempts: 1))
            #expect(claims.count == 35 && Set(claims.map(\.key)).count == 35)
            #expect(try await waiter.value)
            let rest = try await coordinator.claim(
                queue: "big", worker: "w", limit: 100, lease: .seconds(30), policy: Checks.quick(maxAttempts: 1))
            #expect(rest.count == 5)
            for claim in rest { #expect(try await coordinator.complete(claim, resultKey: nil) == .accepted) }
            // The 35 short leases expire on their sub-queues; max attempts 1: each fails.
            var failed = 0
            try await ValkeyTestServers.waitUntil("the leases are reaped", timeout: .seconds(10)) {
                failed += try await coordinator.housekeeping(queue: "big").failedByReap
                return failed == 35
            }
            let stats = try #require(try await coordinator.stats()["big"])
            #expect(stats == [.pending: 0, .processing: 0, .retryWait: 0, .completed: 6, .failed: 35, .cancelled: 0])
            let one = try #require(claims.first?.key)
            #expect(try await coordinator.status(one)?.state == .failed)
            #expect(try await coordinator.retry(one)?.state == .pending)
            #expect(try await coordinator.delete(one)?.state == .pending)
            #expect(try await coordinator.stats()["big"]?[.pending] == 0)
        }
    }

    /// The benchmark's own bookkeeping (every batch completed exactly once, cleanup), not its speed.
    @Test(arguments: [1, 8]) func benchmarkCompletesEveryBatchAndCleansUp(claimLimit: Int) async throws {
        try await withValkeyServer { url in
            let valkey = try await ValkeyConnection.connect(url)
            defer { valkey.close() }
            let result = try await runCoordinatorBenchmark(
                valkey: valkey, batches: 500, concurrency: 8, claimLimit: claimLimit)
            #expect(result.batches == 500 && result.batchesPerSecond > 0)
            #expect(result.summary.contains("batches/s"))
            #expect(try await Coordinator(valkey: valkey).queues().isEmpty)
            #expect(try await valkey.send(RESPCommand("DBSIZE"), key: nil).integer == 0)
        }
    }

    @Test func embeddedServerStartsAndStops() async throws {
        let binary = try EmbeddedValkeyServer.locateBinary(explicitPath: try ValkeyTestServers.binary("valkey-server"))
        // A descriptor of ours without close-on-exec must not reach the server (it would outlive our close).
        let strayPath = NSTemporaryDirectory() + "vf-stray-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let stray = open(strayPath, O_CREAT | O_RDWR, 0o600)
        #expect(stray > 2)
        defer {
            close(stray)
            unlink(strayPath)
        }
        let server = try await EmbeddedValkeyServer.start(binary: binary, directory: nil, appendOnly: false)
        #expect(server.url.hasPrefix("unix:///") && server.url.hasSuffix("/valkey.sock"))
        #expect(kill(server.pid, 0) == 0)
        let serverFDs = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.pid)/fd")
        let targets = serverFDs.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(server.pid)/fd/\($0)") }
        #expect(!targets.isEmpty)
        #expect(!targets.contains(strayPath), "valkey-server inherited \(strayPath): \(targets)")
        let valkey = try await ValkeyConnection.connect(server.url)
        try await valkey.ping()
        #expect(!valkey.isCluster)
        #expect(try await valkey.replicaCount() == 0)
        valkey.close()
        await server.stop()
        #expect(!FileManager.default.fileExists(atPath: server.directory))
        await server.stop()
        #expect(throws: NodeError.self) {
            _ = try EmbeddedValkeyServer.locateBinary(explicitPath: "/nonexistent/valkey-server")
        }
        await #expect(throws: NodeError.self) { _ = try await ValkeyConnection.connect("http://nope") }
        await #expect(throws: NodeError.self) {
            _ = try await ValkeyConnection.connect("unix:///nonexistent/valkey.sock")
        }
    }
}
