import FlightProto
import FlightRPC
import Foundation
import Node
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Hot queues spread over sub-queues: the shard count stored in Valkey, submit spreading batches, workers
/// claiming across sub-queues fairly, every view showing one queue, and changes of the count stranding nothing.
@Suite(.serialized) struct QueueShardTests {
    /// The sub-queue CRC16(ID) mod K that a batch id lands in.
    static func shard(_ id: String, of count: Int) -> Int { Int(HashSlot.crc16(id.utf8)) % count }

    /// `per` ids for each of `count` sub-queues, in the order sub-queue 0's ids, then 1's, … (so a claim order
    /// that just followed submission would drain one sub-queue after another).
    static func ids(per: Int, count: Int, prefix: String) -> [String] {
        var buckets = [[String]](repeating: [], count: count)
        var index = 0
        while buckets.contains(where: { $0.count < per }), index < 100_000 {
            let id = "\(prefix)\(index)"
            let shard = Self.shard(id, of: count)
            if buckets[shard].count < per { buckets[shard].append(id) }
            index += 1
        }
        return buckets.flatMap { $0 }
    }

    static func length(_ valkey: ValkeyConnection, _ key: String, list: Bool) async throws -> Int {
        Int(try await valkey.send(RESPCommand(list ? "LLEN" : "ZCARD", key), key: key).integer ?? -1)
    }

    @Test func shardCountIsStoredInValkeyReadByEveryProcessAndValidated() async throws {
        try await withValkeyServer { url in
            let valkey = try await ValkeyConnection.connect(url)
            defer { valkey.close() }
            let writer = Coordinator(valkey: valkey)
            let reader = Coordinator(valkey: valkey, layoutRefresh: .milliseconds(50))
            #expect(try await reader.layout("hot") == QueueLayout(queue: "hot", shards: 1))
            for bad in [0, -1, Coordinator.maxShards + 1] {
                await #expect(throws: NodeError.self) { try await writer.configureShards(queue: "hot", shards: bad) }
            }
            await #expect(throws: NodeError.self) { try await writer.configureShards(queue: "bad#name", shards: 2) }

            // A batch in the plain queue, and a process whose layout will be stale (read now, kept an hour).
            let old = try BatchKey(queue: "hot", id: "old")
            _ = try await writer.register(old, location: "grpc://127.0.0.1:1", rows: 1, bytes: 1, maxAttempts: 3)
            let stale = Coordinator(valkey: valkey, layoutRefresh: .seconds(3600))
            #expect(try await stale.layout("hot").shards == 1)

            let layout = try await writer.configureShards(queue: "hot", shards: 4)
            #expect(layout.shards == 4 && layout.history == [1, 4])
            let slots = ["hot", "hot#0", "hot#1", "hot#2", "hot#3"].map { String(HashSlot.slot(for: $0)) }.joined(separator: ",")
            #expect(layout.json == #"{"queue":"hot","shards":4,"history":[1,4],"sub_queues":["hot","hot#0","hot#1","hot#2","hot#3"],"#
                + #""slots":[\#(slots)]}"#)
            // The stale process's register is refused by the plain queue and lands in its sub-queue instead.
            let new = try BatchKey(queue: "hot", id: "new")
            #expect(try await stale.register(new, location: "grpc://127.0.0.1:1", rows: 1, bytes: 1, maxAttempts: 3).created)
            let hash = "vf:{hot#\(Self.shard("new", of: 4))}:b:new"
            #expect(try await valkey.send(RESPCommand("EXISTS", hash), key: hash).integer == 1)
            #expect(try await stale.layout("hot").shards == 4)
            #expect(try await writer.status(old)?.state == .pending)
            #expect(try await writer.status(new)?.state == .pending)
            #expect(try await writer.stats()["hot"]?[.pending] == 2)
            // Once the plain queue is empty, housekeeping drops it from the history.
            #expect(try await writer.housekeeping(queue: "hot").expired == 0)
            #expect(try await writer.readLayout("hot").history == [1, 4])
            _ = try await writer.delete(old)
            _ = try await writer.housekeeping(queue: "hot")
            #expect(try await writer.readLayout("hot").history == [4])
            // Stored with the queue, in its own slot: one hash.
            let config = try await valkey.send(RESPCommand("HGETALL", "vf:{hot}:config"), key: "vf:{hot}:config")
            #expect(config.pairs?.count == 3)
            // Another process sees it within its refresh, without a restart.
            try await ValkeyTestServers.waitUntil("the reader sees 4 shards", timeout: .seconds(10)) {
                try await reader.layout("hot").shards == 4
            }
            #expect(try await writer.queues() == ["hot"])
            // The history only grows: 2 after 4 keeps 4's sub-queues in the drained set.
            let shrunk = try await writer.configureShards(queue: "hot", shards: 2)
            #expect(shrunk.shards == 2 && shrunk.history == [2, 4])
            #expect(shrunk.json.contains(#""sub_queues":["hot#0","hot#1","hot#2","hot#3"]"#))
            // A queue configured before its first batch starts without the plain queue.
            #expect(try await writer.configureShards(queue: "fresh", shards: 3).history == [3])
        }
    }

    /// A claim of n takes a fair share from each sub-queue; single claims rotate over them; a claim's fenced
    /// calls go to the sub-queue it came from, also after the count changed.
    @Test func claimsShareOutOverSubQueuesAndFollowTheirBatch() async throws {
        try await withValkeyServer { url in
            let valkey = try await ValkeyConnection.connect(url)
            defer { valkey.close() }
            let coordinator = Coordinator(valkey: valkey)
            _ = try await coordinator.configureShards(queue: "share", shards: 4)
            for id in Self.ids(per: 6, count: 4, prefix: "s") {
                _ = try await coordinator.register(
                    try BatchKey(queue: "share", id: id), location: "grpc://127.0.0.1:1", rows: 1, bytes: 1, maxAttempts: 3)
            }
            let policy = RetryPolicy(maxAttempts: 3, base: .milliseconds(10), max: .milliseconds(20))
            let eight = try await coordinator.claim(queue: "share", worker: "w", limit: 8, lease: .seconds(30), policy: policy)
            #expect(eight.count == 8)
            #expect(Dictionary(grouping: eight, by: { Self.shard($0.key.id, of: 4) }).mapValues(\.count) == [0: 2, 1: 2, 2: 2, 3: 2])
            var singles: [Int] = []
            for _ in 0..<8 {
                let one = try await coordinator.claim(queue: "share", worker: "w", limit: 1, lease: .seconds(30), policy: policy)
                singles += one.map { Self.shard($0.key.id, of: 4) }
            }
            #expect(singles.count == 8 && Set(singles[0..<4]).count == 4 && Set(singles[4..<8]).count == 4, "\(singles)")
            _ = try await coordinator.configureShards(queue: "share", shards: 1)
            for claim in eight { #expect(try await coordinator.complete(claim, resultKey: nil) == .accepted) }
            // A claim rebuilt from its key and token alone (as the result upload's fencing check does) is located.
            let bare = BatchClaim(key: eight[0].key, token: eight[0].token, attempt: 1, location: "", maxAttempts: 0, rows: 0, bytes: 0)
            #expect(try await coordinator.isCurrent(bare) == false)
            let rest = try await coordinator.claim(queue: "share", worker: "w", limit: 100, lease: .seconds(30), policy: policy)
            #expect(rest.count == 8)
            let live = BatchClaim(key: rest[0].key, token: rest[0].token, attempt: 1, location: "", maxAttempts: 0, rows: 0, bytes: 0)
            #expect(try await coordinator.isCurrent(live))
            #expect(try await coordinator.stats()["share"] == [
                .pending: 0, .processing: 16, .retryWait: 0, .completed: 8, .failed: 0, .cancelled: 0,
            ])
        }
    }

    /// `bench pipeline --coordinator-only --queue-shards 3`'s bookkeeping (not its speed): every batch completed
    /// once over the three sub-queues, every key removed afterwards.
    @Test func coordinatorBenchmarkOverSubQueuesCompletesEveryBatchAndCleansUp() async throws {
        try await withValkeyServer { url in
            let valkey = try await ValkeyConnection.connect(url)
            defer { valkey.close() }
            let result = try await runCoordinatorBenchmark(valkey: valkey, batches: 300, concurrency: 4, shards: 3)
            #expect(result.batches == 300 && result.shards == 3 && result.summary.contains("3 sub-queues"))
            #expect(try await valkey.send(RESPCommand("DBSIZE"), key: nil).integer == 0)
        }
    }

    /// One worker slot, four sub-queues holding ten batches each, submitted sub-queue after sub-queue: the
    /// worker takes them round-robin, so every window of four completions has all four sub-queues.
    @Test func oneWorkerDrainsFourSubQueuesInterleaved() async throws {
        try await withPrivateValkey { valkey in
            let flight = try await ModeProcess.start("flight", ["--valkey", valkey.url])
            defer { flight.child.terminate() }
            let client = try FlightClient(location: FlightLocation(parsing: try #require(flight.location)))
            defer { client.close() }
            let view = InProcessNodeView(client: client, location: flight.location!)
            let layout = try #require(try await view.action("configure-queue", #"{"queue":"fair","shards":4}"#).first)
            #expect(layout["shards"] == 4)
            let ids = Self.ids(per: 10, count: 4, prefix: "f")
            let stream = try PipelineData.stream(rows: 3)
            for id in ids { _ = try await view.submit(stream, queue: "fair", id: id) }
            let stats = try #require(try await view.action("stats").first)
            #expect(stats["fair"]["pending"] == 40 && stats.object.keys.count == 1, "\(stats)")

            let worker = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "fair", "--concurrency", "1"])
            defer { worker.child.terminate() }
            for id in ids { #expect(try await view.waitFinished("fair/\(id)")["status"] == "completed") }
            #expect(await worker.stop() == 0)

            // Completion order (one slot: the claim order), oldest first.
            let listed = try await view.action("list", #"{"queue":"fair","status":"completed","limit":100}"#)
            #expect(listed.count == 40)
            let order = listed.reversed().compactMap { $0["key"].string?.split(separator: "/").last.map(String.init) }
            let shards = order.map { Self.shard($0, of: 4) }
            for start in stride(from: 0, through: shards.count - 4, by: 4) {
                #expect(Set(shards[start..<(start + 4)]).count == 4, "claim order by sub-queue: \(shards)")
            }
        }
    }

    /// Batches pending under 2 sub-queues, then 4, then the plain queue again: none is lost, each is found by
    /// its key (status, cancel, retry), the counts are one queue's, and a running worker drains them all.
    @Test func changingTheShardCountWithBatchesPendingLosesNone() async throws {
        try await withPrivateValkey { server in
            let valkey = try await ValkeyConnection.connect(server.url)
            defer { valkey.close() }
            let flight = try await ModeProcess.start("flight", ["--valkey", server.url])
            defer { flight.child.terminate() }
            let client = try FlightClient(location: FlightLocation(parsing: try #require(flight.location)))
            defer { client.close() }
            let view = InProcessNodeView(client: client, location: flight.location!)
            let stream = try PipelineData.stream(rows: 5)
            var keys: [String] = []
            for (round, shards) in [2, 4, 1].enumerated() {
                let reply = try await CLI.run(["queue", "configure", "re", "--shards", "\(shards)", "--server", flight.location!])
                #expect(reply.status == 0 && reply.text.contains("re  shards=\(shards)"), "\(reply.stderr)")
                for index in 0..<12 {
                    keys.append(try #require(try await view.submit(stream, queue: "re", id: "r\(round)-\(index)")["key"].string))
                }
            }
            // Where they are: 12 in re#0…1, 12 in re#0…3, 12 in the plain queue.
            var inSubQueues = 0
            for shard in 0..<4 { inSubQueues += try await Self.length(valkey, "vf:{re#\(shard)}:ready", list: true) }
            #expect(inSubQueues == 24)
            #expect(try await Self.length(valkey, "vf:{re}:ready", list: true) == 12)
            let shown = try await CLI.run(["queue", "show", "re", "--json", "--server", flight.location!])
            // 2 was the first count (the plain queue was empty then), then 4, then 1.
            #expect(shown.text.contains(#""shards":1,"history":[1,2,4]"#), "\(shown.text)")
            let stats = try #require(try await view.action("stats").first)
            #expect(stats["re"]["pending"] == 36 && stats.object.keys.count == 1, "\(stats)")

            // Management by key finds batches of every earlier layout.
            let early = keys[0]
            #expect(try await view.status(early)["status"] == "pending")
            let cancelled = try await CLI.run(["cancel", early, "--json", "--server", flight.location!])
            #expect(cancelled.status == 0 && cancelled.text.contains(#""status":"cancelled""#), "\(cancelled.stderr)")
            let retried = try await CLI.run(["retry", early, "--json", "--server", flight.location!])
            #expect(retried.status == 0 && retried.text.contains(#""status":"pending""#), "\(retried.stderr)")

            // A worker started now drains every layout; a change while it runs is picked up without a restart.
            let worker = try await ModeProcess.start("worker", ["--valkey", server.url, "--queue", "re", "--concurrency", "2"])
            defer { worker.child.terminate() }
            // 6 sub-queues: re#4 and re#5 are new to the running worker, which must read the layout again.
            let reply = try await CLI.run(["queue", "configure", "re", "--shards", "6", "--server", flight.location!])
            #expect(reply.status == 0 && reply.text.contains("history=1,2,4,6"), "\(reply.text) \(reply.stderr)")
            for id in Self.ids(per: 2, count: 6, prefix: "late-") {
                keys.append(try #require(try await view.submit(stream, queue: "re", id: id)["key"].string))
            }
            for key in keys {
                let status = try await view.waitFinished(key, timeout: .seconds(60))
                #expect(status["status"] == "completed", "\(key): \(status)")
            }
            #expect(await worker.stop() == 0)
            let done = try #require(try await view.action("stats").first)
            #expect(done["re"]["completed"] == 48 && done["re"]["pending"] == 0, "\(done)")
            #expect(try await Self.length(valkey, "vf:{re#4}:idx:completed", list: false) == 2)
            #expect(try await Self.length(valkey, "vf:{re#5}:idx:completed", list: false) == 2)
            let listed = try await view.action("list", #"{"queue":"re","limit":1000}"#)
            #expect(Set(listed.compactMap { $0["key"].string }) == Set(keys))
        }
    }

    @Test func shardCountsOutOfRangeAreClearCommandLineErrors() async throws {
        let configure = try await CLI.run(["queue", "configure", "q", "--shards", "0"])
        #expect(configure.status != 0 && configure.stderr.contains("--shards must be 1 to 1024, got 0"), "\(configure.stderr)")
        let huge = try await CLI.run(["queue", "configure", "q", "--shards", "5000"])
        #expect(huge.status != 0 && huge.stderr.contains("--shards must be 1 to 1024"), "\(huge.stderr)")
        let badQueue = try await CLI.run(["queue", "configure", "q#1", "--shards", "2"])
        #expect(badQueue.status != 0 && badQueue.stderr.contains("queue"), "\(badQueue.stderr)")
        for bad in ["q=0", "q=2000", "q", "q=2,q=3", "q=x"] {
            let mode = try await CLI.run(["coordinator", "--valkey", "unix:///nonexistent/sock", "--queue-shards", bad])
            #expect(mode.status != 0 && mode.stderr.contains("--queue-shards"), "\(bad): \(mode.stderr)")
        }
        let bench = try await CLI.run(["bench", "pipeline", "--coordinator-only", "--queue-shards", "0"])
        #expect(bench.status != 0 && bench.stderr.contains("--queue-shards must be 1 to 1024"), "\(bench.stderr)")
    }

    /// On a 3+3 cluster: a queue of three sub-queues whose slots belong to three different primaries, and the
    /// pipeline through `valkeyflight` (submit, wait, get, stats, list, /metrics) shows it as one queue.
    @Test func shardedQueueOnAClusterSpreadsOverPrimariesAndRunsEndToEnd() async throws {
        try await withValkeyCluster(primaries: 3, replicas: 1) { seed in
            let valkey = try await ValkeyConnection.connect(seed, clientName: "queue-shard-tests")
            defer { valkey.close() }
            // A queue whose sub-queues' tags fall in the three thirds of the slot space.
            var queue = ""
            for index in 0..<10_000 where queue.isEmpty {
                let name = "hot\(index)"
                if Set((0..<3).map { HashSlot.slot(for: "\(name)#\($0)") / 5462 }).count == 3 { queue = name }
            }
            try #require(!queue.isEmpty)
            // Valkey agrees on each sub-queue's slot, and the three slots have three different primaries.
            var owners: [String] = []
            let slots = try await valkey.send(RESPCommand("CLUSTER", "SLOTS"), key: nil)
            for shard in 0..<3 {
                let key = "vf:{\(queue)#\(shard)}:ready"
                let slot = try await valkey.send(RESPCommand("CLUSTER", "KEYSLOT", key), key: key).integer
                #expect(slot == Int64(HashSlot.slot(for: key)))
                for range in slots.elements ?? [] {
                    guard let parts = range.elements, parts.count >= 3, let low = parts[0].integer,
                        let high = parts[1].integer, let primary = parts[2].elements, primary.count >= 2,
                        let slot, (low...high).contains(slot)
                    else { continue }
                    owners.append("\(primary[0].string ?? "?"):\(primary[1].integer ?? -1)")
                }
            }
            #expect(owners.count == 3 && Set(owners).count == 3, "primaries of the sub-queues: \(owners)")

            let node = try await ModeProcess.start("all", [
                "--valkey", seed, "--queue", queue, "--queue-shards", "\(queue)=3", "--concurrency", "2",
                "--exec", "cat", "--grace", "5s",
            ])
            defer { node.child.terminate() }
            let server = try #require(node.location)
            let directory = NSTemporaryDirectory() + "vf-shards-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var files: [String] = []
            var inputs: [String: [Double?]] = [:]
            for index in 0..<30 {
                let path = "\(directory)/in\(index).arrows"
                let stream = try PipelineData.stream(rows: 4 + index, offset: Double(index))
                try Data(stream).write(to: URL(fileURLWithPath: path))
                files.append(path)
                inputs[path] = try PipelineData.prices(stream)
            }
            let submitted = try await CLI.run(["submit"] + files + ["--queue", queue, "--server", server, "--json"])
            #expect(submitted.status == 0, "\(submitted.stderr)")
            let keys = submitted.text.split(separator: "\n").compactMap { line -> String? in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
                return object["key"] as? String
            }
            #expect(keys.count == 30 && keys.allSatisfy { $0.hasPrefix("\(queue)/") }, "\(submitted.text)")
            let waited = try await CLI.run(["wait"] + keys + ["--timeout", "120s", "--server", server])
            #expect(waited.status == 0, "\(waited.stderr)")
            // Results: the processor (cat) returned each input unchanged.
            for (key, file) in zip(keys, files) {
                let out = "\(directory)/\(key.split(separator: "/").last!).result.arrows"
                let got = try await CLI.run(["get", key, "--result", "-o", out, "--server", server])
                #expect(got.status == 0, "\(got.stderr)")
                #expect(try PipelineData.prices(Array(try Data(contentsOf: URL(fileURLWithPath: out)))) == inputs[file])
            }
            // Every sub-queue got some of them (30 random ids over 3: all empty but one is ~1e-5 likely).
            for shard in 0..<3 {
                #expect(try await Self.length(valkey, "vf:{\(queue)#\(shard)}:idx:completed", list: false) > 0)
            }
            // One queue everywhere: stats, list, /metrics.
            let stats = try await CLI.run(["stats", "--json", "--server", server])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(stats.stdout)) as? [String: [String: Int]])
            #expect(Array(object.keys) == [queue], "\(stats.text)")
            #expect(object[queue]?["completed"] == 30 && object[queue]?["pending"] == 0, "\(stats.text)")
            let table = try await CLI.run(["stats", "--server", server])
            #expect(table.status == 0 && !table.text.contains("#"), "\(table.text)")
            let listed = try await CLI.run(["list", "--queue", queue, "--json", "--server", server])
            #expect(listed.text.split(separator: "\n").count == 30)
            let metrics = try await HTTPProbe.metrics(HTTPProbe.base(server) + "/metrics")
            #expect(metrics.value("valkeyflight_batches", nil, ["queue": queue, "status": "completed"]) == 30)
            let samples = metrics.families["valkeyflight_batches"]["samples"].array
            #expect(!samples.isEmpty && samples.allSatisfy { $0[1]["queue"].string == queue }, "\(samples)")
            let api = try await HTTPProbe.get(HTTPProbe.base(server) + "/api/stats")
            #expect(api.status == 200 && Array(api.json.object.keys) == [queue] && api.json[queue]["completed"] == 30, "\(api.body)")
            let batches = try await HTTPProbe.get(HTTPProbe.base(server) + "/api/batches?queue=\(queue)&limit=100")
            #expect(batches.status == 200 && batches.json.array.count == 30)
            #expect(batches.json.array.allSatisfy { $0["queue"].string == queue })
            let shown = try await CLI.run(["queue", "show", queue, "--server", server])
            #expect(shown.text.contains("\(queue)  shards=3  history=3  sub-queues=\(queue)#0,\(queue)#1,\(queue)#2"), "\(shown.text)")
            #expect(await node.stop() == 0)
        }
    }
}
