import Foundation
import Glibc
import Node
import RESP
import Synchronization
import Testing

@Suite(.serialized) struct CoordinatorClusterTests {
    typealias Checks = CoordinatorChecks

    /// Queue names whose slots fall in each third of the slot space (one per primary of `--cluster create`).
    static func queuesOnEveryPrimary() -> [String] {
        var found: [Int: String] = [:]
        var index = 0
        while found.count < 3, index < 10_000 {
            let name = "q\(index)"
            let third = min(2, HashSlot.slot(for: name) / 5462)
            if found[third] == nil { found[third] = name }
            index += 1
        }
        return found.sorted { $0.key < $1.key }.map(\.value)
    }

    @Test func lifecycleOnAThreePlusThreeCluster() async throws {
        try await withValkeyCluster(primaries: 3, replicas: 1) { seed in
            let valkey = try await ValkeyConnection.connect(seed, clientName: "coordinator-cluster-tests")
            defer { valkey.close() }
            #expect(valkey.isCluster)
            let coordinator = Coordinator(valkey: valkey)
            let queues = Self.queuesOnEveryPrimary()
            #expect(Set(queues.map { HashSlot.slot(for: $0) / 5462 }).count == 3)
            for queue in queues { try await Checks.lifecycle(coordinator, queue: queue) }
            #expect(try await coordinator.queues() == queues.sorted())
            // A queue spread over sub-queues in different slots behaves as one queue.
            let sharded = Coordinator(valkey: valkey, queueShards: ["spread": 3])
            try await Checks.lifecycle(sharded, queue: "spread")
            try await Checks.registerWakesWaiter(sharded, queues: ["spread"], target: "spread")
            let spreadClaims = try await sharded.claim(
                queue: "spread", worker: "w", limit: 10, lease: .seconds(30), policy: Checks.quick)
            #expect(spreadClaims.count == 1)
            for claim in spreadClaims { #expect(try await sharded.complete(claim, resultKey: nil) == .accepted) }
            #expect(try await sharded.stats()["spread"]?[.completed] == 2)

            // A waiter on all three queues (three slots, three BLPOPs) wakes for a register on any of them.
            for target in queues {
                try await Checks.registerWakesWaiter(coordinator, queues: queues, target: target)
            }

            // Fencing across a reap on a cluster slot.
            let key = try Checks.key(queues[1], "reaped")
            _ = try await coordinator.register(key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
            var claimed: [BatchClaim] = []
            try await ValkeyTestServers.waitUntil("the batch is claimed", timeout: .seconds(10)) {
                claimed += try await coordinator.claim(
                    queue: queues[1], worker: "w", limit: 10, lease: .milliseconds(30), policy: Checks.quick)
                return claimed.contains { $0.key == key }
            }
            let old = try #require(claimed.first { $0.key == key })
            var reaped = 0
            try await ValkeyTestServers.waitUntil("the lease is reaped", timeout: .seconds(10)) {
                reaped += try await coordinator.housekeepingAllQueues().reaped
                return reaped >= claimed.count
            }
            #expect(try await coordinator.complete(old, resultKey: nil) == .stale)

            // Work spread over the three queues: each batch completed exactly once, stats exact.
            let perQueue = 100
            for queue in queues {
                for index in 0..<perQueue {
                    _ = try await coordinator.register(
                        try Checks.key(queue, "many-\(index)"), location: Checks.location, rows: 1, bytes: 1,
                        maxAttempts: 3)
                }
            }
            let completed = CoordinatorShared<Set<BatchKey>>([])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        let clock = ContinuousClock()
                        let deadline = clock.now.advanced(by: .seconds(60))
                        while clock.now < deadline {
                            _ = try await coordinator.housekeepingAllQueues()
                            var any = false
                            for queue in queues {
                                let claims = try await coordinator.claim(
                                    queue: queue, worker: "w\(worker)", limit: 8, lease: .seconds(30),
                                    policy: Checks.quick)
                                for claim in claims {
                                    any = true
                                    if try await coordinator.complete(claim, resultKey: nil) == .accepted {
                                        let inserted = completed.update { $0.insert(claim.key).inserted }
                                        #expect(inserted)
                                    }
                                }
                            }
                            if !any {
                                let stats = try await coordinator.stats()
                                let open = stats.values.reduce(0) {
                                    $0 + ($1[.pending] ?? 0) + ($1[.processing] ?? 0) + ($1[.retryWait] ?? 0)
                                }
                                if open == 0 { return }
                                _ = try await coordinator.waitForWork(queues: queues, timeout: .milliseconds(100))
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let stats = try await coordinator.stats()
            for queue in queues {
                let counts = try #require(stats[queue])
                #expect(counts[.pending] == 0 && counts[.processing] == 0 && counts[.retryWait] == 0)
                #expect(counts.count == BatchState.allCases.count)
            }
            let total = stats.values.reduce(0) { $0 + ($1[.completed] ?? 0) }
            // Lifecycle batches were completed before; the workers completed the rest: the many, the wake-up
            // batches (one per queue) and the reaped one.
            let byWorkers = completed.update { $0.count }
            #expect(byWorkers == queues.count * perQueue + queues.count + 1)
            #expect(total == byWorkers + queues.count)
            // With every change acknowledged by one replica (WAIT 1): same behaviour, no shortfall warning.
            #expect(try await valkey.replicaCount() == 1)
            let warnings = CoordinatorShared<[String]>([])
            let acknowledged = Coordinator(valkey: valkey, replicasAck: 1) { warning in
                warnings.update { $0.append(warning) }
            }
            try await Checks.lifecycle(acknowledged, queue: "acked")
            #expect(warnings.value.isEmpty)
            // Two replicas per primary do not exist: WAIT gives up after 1 s, the change stands, a warning says so.
            let demanding = Coordinator(valkey: valkey, replicasAck: 2) { warning in
                warnings.update { $0.append(warning) }
            }
            let extra = try Checks.key("acked", "extra")
            #expect(
                try await demanding.register(
                    extra, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 1
                ).created)
            #expect(try await demanding.status(extra)?.state == .pending)
            #expect(warnings.value.count == 1 && warnings.value.first?.contains("only 1 of 2") == true)
            _ = try await coordinator.delete(extra)

            let newest = try await coordinator.list(queue: nil, state: .completed, limit: 20)
            #expect(newest.count == 20)
            #expect(
                zip(newest, newest.dropFirst()).allSatisfy {
                    $0.updatedAtMilliseconds >= $1.updatedAtMilliseconds
                })
        }
    }

    @Test func registrationsSurviveAKilledServerRestartedWithAppendOnlyFile() async throws {
        let binary = try ValkeyTestServers.binary("valkey-server")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vf-aof-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var server = try await EmbeddedValkeyServer.start(binary: binary, directory: directory, appendOnly: true)
        do {
            let valkey = try await ValkeyConnection.connect(server.url)
            defer { valkey.close() }
            let coordinator = Coordinator(valkey: valkey)
            let acknowledged = CoordinatorShared<[BatchKey]>([])
            let stop = CoordinatorShared(false)
            let registering = Task {
                var index = 0
                while !stop.value, index < 1_000_000 {
                    index += 1
                    let key = try BatchKey(queue: "durable", id: "b\(index)")
                    do {
                        _ = try await coordinator.register(
                            key, location: Checks.location, rows: 1, bytes: 1, maxAttempts: 3)
                        acknowledged.update { $0.append(key) }
                    } catch {
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
            try await ValkeyTestServers.waitUntil("300 registrations are acknowledged") {
                acknowledged.value.count >= 300
            }
            kill(server.pid, SIGKILL)
            await server.stop()
            let beforeRestart = acknowledged.value.count
            server = try await EmbeddedValkeyServer.start(binary: binary, directory: directory, appendOnly: true)
            try await ValkeyTestServers.waitUntil("registrations succeed again after the restart") {
                acknowledged.value.count >= beforeRestart + 200
            }
            stop.update { $0 = true }
            try await registering.value
            // Registrations during the restart may fail (then they were never acknowledged) or, reconnected in time,
            // succeed: both are correct; what matters is that no acknowledged one is lost.

            let keys = acknowledged.value
            var missing: [BatchKey] = []
            for key in keys where try await coordinator.status(key)?.state != .pending { missing.append(key) }
            #expect(missing.isEmpty, "acknowledged but lost: \(missing.prefix(5))")
            let pending = try #require(try await coordinator.stats()["durable"]?[.pending])
            #expect(pending >= keys.count)
            let claims = try await coordinator.claim(
                queue: "durable", worker: "w", limit: 1000, lease: .seconds(30), policy: RetryPolicy())
            #expect(claims.count == min(1000, pending))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }
}
