import FlightRPC
import Foundation
import Node
import Testing

/// The pipeline on a 3+3 Valkey Cluster: the same node, coordinator and workers, queues in different slots.
@Suite(.serialized) struct PipelineClusterTests {
    @Test func lifecycleOnAValkeyCluster() async throws {
        try await withValkeyCluster(primaries: 3, replicas: 1) { seed in
            try await withScript("if [ \"$VALKEYFLIGHT_QUEUE\" = c2 ] && [ \"$VALKEYFLIGHT_ATTEMPT\" = 1 ]; then cat > /dev/null; exit 1; fi; exec cat") { script in
                var configuration = NodeConfiguration(mode: .all)
                configuration.valkeyURL = seed
                configuration.worker.queues = ["c0", "c1", "c2"]
                configuration.worker.concurrency = 4
                configuration.worker.policy = RetryPolicy(maxAttempts: 3, base: .milliseconds(20), max: .milliseconds(50))
                configuration.processor = .exec(command: script, persistent: false)
                configuration.grace = .seconds(5)
                try await InProcessNode.with(configuration) { node in
                    var inputs: [String: [UInt8]] = [:]
                    for index in 0..<30 {
                        let stream = try PipelineData.stream(rows: 10 + index, offset: Double(index))
                        let key = try #require(try await node.submit(stream, queue: "c\(index % 3)")["key"].string)
                        inputs[key] = stream
                    }
                    for (key, stream) in inputs {
                        let status = try await node.waitFinished(key, timeout: .seconds(60))
                        #expect(status["status"] == "completed", "\(key): \(status)")
                        // Queue c2's first attempt fails: it is retried and completes on attempt 2.
                        #expect(status["attempts"] == (key.hasPrefix("c2/") ? 2 : 1), "\(key): \(status)")
                        #expect(try PipelineData.prices(try await node.fetch(key + "/result")) == (try PipelineData.prices(stream)))
                    }
                    let stats = try #require(try await node.action("stats").first)
                    for queue in ["c0", "c1", "c2"] {
                        #expect(stats[queue]["completed"] == 10, "\(queue): \(stats)")
                        #expect(stats[queue]["failed"] == 0 && stats[queue]["pending"] == 0, "\(queue): \(stats)")
                    }
                    let listed = try await node.action("list", "{\"status\":\"completed\",\"limit\":100}")
                    #expect(listed.count == 30)
                }
            }
        }
    }
}
