import Foundation
import Node
import Testing

/// `GET /metrics` of a running pipeline, read with Prometheus' own parser: every contract name with its type and
/// label sets, and values that match what the test did.
@Suite(.serialized) struct MetricsTests {
    @Test func metricsOfARunningPipelineHaveTheContractNamesAndTrueValues() async throws {
        do {
            try await withPrivateValkey { valkey in
                var configuration = NodeConfiguration(mode: .all)
                configuration.valkeyURL = valkey.url
                configuration.worker.queues = ["metrics"]
                configuration.worker.concurrency = 2
                configuration.grace = .seconds(5)
                try await InProcessNode.with(configuration) { node in
                    var keys: [String] = []
                    for index in 0..<5 {
                        let put = try await node.submit(try PipelineData.stream(rows: 10 + index), queue: "metrics")
                        keys.append(try #require(put["key"].string))
                    }
                    for key in keys { #expect(try await node.waitFinished(key)["status"] == "completed") }
                    let base = HTTPProbe.base(node.location)
                    let metrics = try await HTTPProbe.metrics(base + "/metrics")
                    #expect(metrics.contentType.hasPrefix("text/plain; version=0.0.4"))

                    let types = [
                        "valkeyflight_batches": "gauge", "valkeyflight_batch_wait_seconds": "histogram",
                        "valkeyflight_batch_processing_seconds": "histogram",
                        "valkeyflight_batch_attempts": "counter", "valkeyflight_flight_rpcs": "counter",
                        "valkeyflight_flight_rpc_seconds": "histogram", "valkeyflight_store_bytes": "gauge",
                        "valkeyflight_store_batches": "gauge", "valkeyflight_worker_busy": "gauge",
                        "valkeyflight_valkey_commands": "counter", "valkeyflight_valkey_errors": "counter",
                        "process_resident_memory_bytes": "gauge", "process_cpu_seconds": "counter",
                        "process_open_fds": "gauge", "process_start_time_seconds": "gauge",
                    ]
                    for (family, type) in types { #expect(metrics.type(family) == type, "\(family)") }

                    // Valkey's counts, per queue and status.
                    #expect(metrics.value("valkeyflight_batches", nil, ["queue": "metrics", "status": "completed"]) == 5)
                    for status in ["pending", "processing", "retry_wait", "failed", "cancelled"] {
                        #expect(metrics.value("valkeyflight_batches", nil, ["queue": "metrics", "status": status]) == 0)
                    }
                    // The worker's attempts and histograms.
                    #expect(metrics.value("valkeyflight_batch_attempts", "valkeyflight_batch_attempts_total",
                                          ["queue": "metrics", "outcome": "completed"]) == 5)
                    for outcome in ["retry", "failed", "lease_lost", "cancelled"] {
                        #expect(metrics.value("valkeyflight_batch_attempts", "valkeyflight_batch_attempts_total",
                                              ["queue": "metrics", "outcome": outcome]) == 0)
                    }
                    for family in ["valkeyflight_batch_wait_seconds", "valkeyflight_batch_processing_seconds"] {
                        #expect(metrics.value(family, family + "_count", ["queue": "metrics"]) == 5, "\(family)")
                        #expect(metrics.value(family, family + "_bucket", ["queue": "metrics", "le": "+Inf"]) == 5)
                        #expect((metrics.value(family, family + "_sum", ["queue": "metrics"]) ?? -1) >= 0)
                    }
                    // Flight RPCs: five DoPuts, and the status polls of waitFinished (at least one per batch).
                    #expect(metrics.value("valkeyflight_flight_rpcs", "valkeyflight_flight_rpcs_total",
                                          ["method": "DoPut", "code": "OK"]) == 5)
                    let polls = metrics.value("valkeyflight_flight_rpcs", "valkeyflight_flight_rpcs_total",
                                              ["method": "DoAction", "code": "OK"]) ?? 0
                    #expect(polls >= 5)
                    #expect(metrics.value("valkeyflight_flight_rpc_seconds", "valkeyflight_flight_rpc_seconds_count",
                                          ["method": "DoPut"]) == 5)
                    // Inputs and results in the store.
                    #expect(metrics.value("valkeyflight_store_batches") == 10)
                    #expect((metrics.value("valkeyflight_store_bytes") ?? 0) > 0)
                    #expect(metrics.value("valkeyflight_worker_busy") == 0)
                    #expect((metrics.value("valkeyflight_valkey_commands", "valkeyflight_valkey_commands_total") ?? 0) >= 15)
                    #expect(metrics.value("valkeyflight_valkey_errors", "valkeyflight_valkey_errors_total") == 0)
                    #expect((metrics.value("process_resident_memory_bytes") ?? 0) > 1_048_576)
                    #expect((metrics.value("process_open_fds") ?? 0) > 3)
                    #expect((metrics.value("process_cpu_seconds", "process_cpu_seconds_total") ?? 0) > 0)
                    let start = metrics.value("process_start_time_seconds") ?? 0
                    let now = Date().timeIntervalSince1970
                    #expect(start > now - 86400 * 30 && start <= now + 5, "start \(start) now \(now)")

                    // A second scrape counts the RPCs since (the gauge of Valkey's counts is cached for a second).
                    let again = try await HTTPProbe.metrics(base + "/metrics")
                    #expect(again.value("valkeyflight_flight_rpcs", "valkeyflight_flight_rpcs_total",
                                        ["method": "DoPut", "code": "OK"]) == 5)
                }
            }
        }
    }

    @Test func failedAttemptsAndRPCErrorsAreCountedByOutcomeAndCode() async throws {
        try await withScript("cat >/dev/null; echo 'boom: the disk is on fire' >&2; exit 3") { failing in
            try await withPrivateValkey { valkey in
                var configuration = NodeConfiguration(mode: .all)
                configuration.valkeyURL = valkey.url
                configuration.worker.queues = ["broken"]
                configuration.worker.policy.maxAttempts = 2
                configuration.worker.policy.base = .milliseconds(10)
                configuration.worker.policy.max = .milliseconds(20)
                configuration.processor = .exec(command: failing, persistent: false)
                configuration.grace = .seconds(5)
                try await InProcessNode.with(configuration) { node in
                    let put = try await node.submit(try PipelineData.stream(rows: 3), queue: "broken")
                    let key = try #require(put["key"].string)
                    #expect(try await node.waitFinished(key)["status"] == "failed")
                    // A DoGet of an unknown key: NOT_FOUND.
                    await #expect(throws: (any Error).self) { _ = try await node.fetch("broken/nothing-here") }
                    let base = HTTPProbe.base(node.location)
                    let metrics = try await HTTPProbe.metrics(base + "/metrics")
                    let attempts = "valkeyflight_batch_attempts_total"
                    #expect(metrics.value("valkeyflight_batch_attempts", attempts, ["queue": "broken", "outcome": "retry"]) == 1)
                    #expect(metrics.value("valkeyflight_batch_attempts", attempts, ["queue": "broken", "outcome": "failed"]) == 1)
                    #expect(metrics.value("valkeyflight_batch_attempts", attempts, ["queue": "broken", "outcome": "completed"]) == 0)
                    #expect(metrics.value("valkeyflight_batches", nil, ["queue": "broken", "status": "failed"]) == 1)
                    #expect(metrics.value("valkeyflight_flight_rpcs", "valkeyflight_flight_rpcs_total",
                                          ["method": "DoGet", "code": "NOT_FOUND"]) == 1)
                    #expect(metrics.value("valkeyflight_batch_processing_seconds", "valkeyflight_batch_processing_seconds_count",
                                          ["queue": "broken"]) == 2)
                }
            }
        }
    }

    @Test func aBatchCancelledWhileProcessedCountsAsCancelledAndBusyShowsTheSlot() async throws {
        try await withScript("cat >/dev/null; sleep 20") { slow in
            try await withPrivateValkey { valkey in
                var configuration = NodeConfiguration(mode: .all)
                configuration.valkeyURL = valkey.url
                configuration.worker.queues = ["slow"]
                // Long enough that a heavily loaded machine (load 30+ seen) answers an extension within the lease.
                configuration.worker.lease = .seconds(10)
                configuration.processor = .exec(command: slow, persistent: false)
                configuration.grace = .seconds(2)
                try await InProcessNode.with(configuration) { node in
                    let key = try #require(try await node.submit(try PipelineData.stream(rows: 2), queue: "slow")["key"].string)
                    let base = HTTPProbe.base(node.location)
                    #expect(try await pollUntil { try await node.status(key)["status"] == "processing" })
                    // The slot counts as busy from just after the claim.
                    var busy = MetricFamilies(families: .null, contentType: "")
                    let sawBusy = try await pollUntil {
                        busy = try await HTTPProbe.metrics(base + "/metrics")
                        return busy.value("valkeyflight_worker_busy") == 1
                    }
                    #expect(sawBusy, "\(busy.families["valkeyflight_worker_busy"])")
                    let cancelled = try await HTTPProbe.get(base + "/api/batches/\(key)/cancel", method: "POST",
                                                            headers: ["X-Requested-With: test"])
                    #expect(cancelled.status == 200)
                    // The worker learns it at its next lease extension (a third of the 10 s lease).
                    var last = MetricFamilies(families: .null, contentType: "")
                    let counted = try await pollUntil {
                        last = try await HTTPProbe.metrics(base + "/metrics")
                        return last.value("valkeyflight_batch_attempts", "valkeyflight_batch_attempts_total",
                                          ["queue": "slow", "outcome": "cancelled"]) == 1
                    }
                    #expect(counted, "\(last.families["valkeyflight_batch_attempts"])")
                    #expect(last.value("valkeyflight_batch_attempts", "valkeyflight_batch_attempts_total",
                                       ["queue": "slow", "outcome": "lease_lost"]) == 0)
                    #expect(last.value("valkeyflight_worker_busy") == 0)
                }
            }
        }
    }
}
