import Glibc
import RESP
import Testing

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A port whose cluster bus port (+10000) is free too (at this instant: a server that loses either retries
/// with another, see ``TestServer/start()``).
@Sendable private func freeClusterPort() -> Int {
    for _ in 0..<1000 {
        let port = freePort()
        guard port < 55_000 else { continue }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port + 10_000).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if bound == 0 { return port }
    }
    return 45_000 + Int.random(in: 0..<10_000)  // the start retries if this one is taken
}

/// Six valkey-server processes joined into a cluster of 3 primaries, each with one replica.
private final class TestCluster: Sendable {
    let nodes: [TestServer]
    let admins: [RESPClient]
    let ids: [String]

    private init(nodes: [TestServer], admins: [RESPClient], ids: [String]) {
        self.nodes = nodes
        self.admins = admins
        self.ids = ids
    }

    /// Runs `body` with a cluster started for it; the servers stop and the admin clients close on every path.
    static func with<T>(_ body: (TestCluster) async throws -> T) async throws -> T {
        try await withTestServers(
            6, .valkey, ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"], port: freeClusterPort
        ) { nodes in
            let cluster = try await Self.start(nodes)
            defer { for admin in cluster.admins { admin.close() } }
            return try await body(cluster)
        }
    }

    private static func start(_ nodes: [TestServer]) async throws -> TestCluster {
        let admins = nodes.map { $0.client() }
        var ids: [String] = []
        for admin in admins { ids.append(try await admin.send("CLUSTER", "MYID").string ?? "") }
        let cluster = TestCluster(nodes: nodes, admins: admins, ids: ids)
        let ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
        for (i, range) in ranges.enumerated() {
            _ = try await admins[i].send("CLUSTER", "ADDSLOTSRANGE", range.0, range.1)
        }
        for node in nodes.dropFirst() { _ = try await admins[0].send("CLUSTER", "MEET", "127.0.0.1", node.port) }
        try await cluster.waitUntil("all nodes know each other") {
            for admin in admins {
                let known = try await admin.send("CLUSTER", "NODES").string ?? ""
                if known.split(separator: "\n").count < 6 { return false }
            }
            return true
        }
        for replica in 3..<6 { _ = try await admins[replica].send("CLUSTER", "REPLICATE", ids[replica - 3]) }
        try await cluster.waitUntil("cluster state ok and replicas in sync") {
            for (i, admin) in admins.enumerated() {
                let info = try await admin.send("CLUSTER", "INFO").string ?? ""
                if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") { return false }
                if i >= 3, !(try await admin.send("INFO", "replication").string ?? "").contains("master_link_status:up")
                {
                    return false
                }
            }
            return true
        }
        return cluster
    }

    /// The node that currently serves `slot` as a primary (from each node's own CLUSTER NODES line).
    func primary(serving slot: Int) async throws -> Int {
        for (i, admin) in self.admins.enumerated() {
            let nodes = try await admin.send("CLUSTER", "NODES").string ?? ""
            guard let mine = nodes.split(separator: "\n").first(where: { $0.contains("myself") }),
                mine.contains("master")
            else { continue }
            for range in mine.split(separator: " ").dropFirst(8) {
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                if bounds.count == 2, bounds[0] <= slot, slot <= bounds[1] { return i }
                if bounds.count == 1, bounds[0] == slot { return i }
            }
        }
        throw TestServerError(description: "no primary serves slot \(slot)")
    }

    func waitUntil(_ what: String, seconds: Double = 20, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestServerError(description: "cluster: timed out waiting until \(what)")
    }

    /// Index of the primary serving `slot` according to node 0... of the given admin.
    func owner(of slot: Int) -> Int { slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2 }

}

@Suite(.serialized) struct RESPClusterTests {
    @Test func slotMigrationAndFailoverUnderLoadLoseNoAcknowledgedWrite() async throws {
        try await TestCluster.with { cluster in
            var configuration = RESPConfiguration(endpoint: .tcp(host: "127.0.0.1", port: cluster.nodes[0].port))
            configuration.commandTimeout = .seconds(10)
            configuration.reconnect = .init(maxAttempts: 2, baseDelay: .milliseconds(20), maxDelay: .milliseconds(100))
            let client = RESPClusterClient(
                seeds: [.tcp(host: "127.0.0.1", port: cluster.nodes[0].port)], configuration: configuration)
            defer { client.close() }

            // Routing basics: hash tags keep keys together; keys of different slots are refused before sending.
            #expect(
                try await client.send(RESPCommand("SET", "{user1}:a", "1"), key: "{user1}:a") == .simpleString(bytes("OK")))
            #expect(
                try await client.send(RESPCommand("MGET", "{user1}:a", "{user1}:b"), keys: ["{user1}:a", "{user1}:b"])
                    == .array([.bulkString(bytes("1")), .null]))
            await #expect(throws: RESPError.crossSlot(command: "MGET", slots: [5061, 12182])) {
                _ = try await client.send(RESPCommand("MGET", "foo", "bar"), keys: ["foo", "bar"])
            }
            // A pipeline across all three primaries comes back in order.
            let keys = (0..<300).map { "p:\($0)" }
            let sets = try await client.pipeline(keys.map { (RESPCommand("SET", $0, $0), $0) })
            #expect(sets.allSatisfy { (try? $0.get()) == .simpleString(bytes("OK")) })
            let gets = try await client.pipeline(keys.map { (RESPCommand("GET", $0), $0) })
            #expect(gets.map { try? $0.get().string } == keys)
            let transaction = try await client.transaction(
                [RESPCommand("SET", "{user1}:t", 1), RESPCommand("INCR", "{user1}:t")], keys: ["{user1}:t", "{user1}:t"])
            #expect(transaction.map { try? $0.get() } == [.simpleString(bytes("OK")), .integer(2)])
            await #expect(throws: RESPError.crossSlot(command: "MULTI", slots: [5061, 12182])) {
                _ = try await client.transaction([RESPCommand("SET", "foo", 1)], keys: ["foo", "bar"])
            }
            let script = RESPScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            #expect(try await client.evalScript(script, keys: ["{s}n"], arguments: [5]) == .integer(5))

            let acknowledged = Shared<[String]>([])
            let failures = Shared<[String]>([])
            let running = Shared(true)
            let migrationSlot = HashSlot.slot(for: "{mig}")
            let source = cluster.owner(of: migrationSlot)
            let destination = (source + 1) % 3
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        var i = 0
                        while running.value, i < 20_000 {
                            let key = i % 4 == 0 ? "{mig}:\(writer):\(i)" : "{t\(i % 40)}:\(writer):\(i)"
                            do {
                                _ = try await client.send(RESPCommand("SET", key, key), key: key)
                                acknowledged.update { $0.append(key) }
                            } catch {
                                failures.update { $0.append("\(key): \(error)") }
                            }
                            i += 1
                        }
                    }
                }
                group.addTask {
                    defer { running.update { $0 = false } }
                    /// Waits until `count` more writes were acknowledged (bounded; the counts are checked below).
                    @Sendable func waitForWrites(_ count: Int) async throws {
                        let target = acknowledged.value.count + count
                        try await cluster.waitUntil("\(count) more writes were acknowledged", seconds: 30) {
                            acknowledged.value.count >= target
                        }
                    }
                    // Let the writers get going, then migrate the slot of {mig} while they keep writing to it.
                    try await waitForWrites(200)
                    let (from, to) = (cluster.admins[source], cluster.admins[destination])
                    _ = try await to.send("CLUSTER", "SETSLOT", migrationSlot, "IMPORTING", cluster.ids[source])
                    _ = try await from.send("CLUSTER", "SETSLOT", migrationSlot, "MIGRATING", cluster.ids[destination])
                    // A key that does not exist on the source yet is answered with ASK.
                    #expect(
                        try await client.send(RESPCommand("SET", "{mig}:probe", "p"), key: "{mig}:probe")
                            == .simpleString(bytes("OK")))
                    // So does a transaction on a new key there: ASKING, then MULTI … EXEC on the target.
                    let queued = try await client.transaction(
                        [RESPCommand("SET", "{mig}:tx", 1), RESPCommand("INCR", "{mig}:tx")], keys: ["{mig}:tx"])
                    #expect(queued.map { try? $0.get() } == [.simpleString(bytes("OK")), .integer(2)])
                    // Bounded: the writers add at most 4 × 5,000 keys to the slot, 200 move per round.
                    var drained = false
                    for _ in 0..<1000 where !drained {
                        let keys = try await from.send("CLUSTER", "GETKEYSINSLOT", migrationSlot, 200).elements ?? []
                        if keys.isEmpty {
                            drained = true
                            continue
                        }
                        let names: [any RESPArgument] = keys.compactMap(\.bytes)
                        _ = try await from.send(
                            RESPCommand(
                                "MIGRATE",
                                arguments: ["127.0.0.1", cluster.nodes[destination].port, "", 0, 5000, "KEYS"] + names))
                    }
                    #expect(drained, "the slot still held keys after 1000 MIGRATE rounds")
                    for admin in cluster.admins.prefix(3) {
                        _ = try await admin.send("CLUSTER", "SETSLOT", migrationSlot, "NODE", cluster.ids[destination])
                    }
                    // Writes go on against the new owner (MOVED) before the failover.
                    try await waitForWrites(200)
                    // Fail over the third shard's primary to its replica (a coordinated manual failover).
                    let failedShard = 3 - source - destination
                    _ = try await cluster.admins[failedShard + 3].send("CLUSTER", "FAILOVER")
                    try await cluster.waitUntil("the replica became primary", seconds: 15) {
                        (try await cluster.admins[failedShard + 3].send("ROLE").elements?.first?.string) == "master"
                    }
                    // And against the promoted replica after it.
                    try await waitForWrites(300)
                }
                try await group.waitForAll()
            }
            let written = acknowledged.value
            #expect(written.count > 500)
            let failed = failures.value
            #expect(failed.count < written.count / 10, "failures: \(failed.prefix(5))")
            let statistics = client.statistics
            #expect(statistics.ask > 0)
            #expect(statistics.moved > 0)
            var lost: [String] = []
            for chunk in stride(from: 0, to: written.count, by: 500) {
                let part = Array(written[chunk..<min(chunk + 500, written.count)])
                let values = try await client.pipeline(part.map { (RESPCommand("GET", $0), $0) })
                for (key, value) in zip(part, values) where (try? value.get().string) != key { lost.append(key) }
            }
            #expect(lost.isEmpty, "acknowledged writes lost: \(lost.prefix(10))")
            #expect(try await client.send(RESPCommand("GET", "{mig}:probe"), key: "{mig}:probe").string == "p")
            #expect(try await client.send(RESPCommand("GET", "{mig}:tx"), key: "{mig}:tx").string == "2")

            // A slot nobody serves: the client backs off, reloads the topology, then reports it clearly.
            let lonely = HashSlot.slot(for: "{lonely}")
            let owner = try await cluster.primary(serving: lonely)
            _ = try await cluster.admins[owner].send("CLUSTER", "DELSLOTS", lonely)
            let impatient = RESPClusterClient(
                seeds: [.tcp(host: "127.0.0.1", port: cluster.nodes[owner].port)], configuration: configuration,
                maxAttempts: 3)
            defer { impatient.close() }
            await #expect {
                _ = try await impatient.send(RESPCommand("SET", "{lonely}", "x"), key: "{lonely}")
            } throws: { error in
                guard let error = error as? RESPError else { return false }
                if case .clusterUnavailable(slot: lonely, _) = error { return true }
                return error.serverCode == "CLUSTERDOWN"
            }
            #expect(impatient.statistics.retries >= 2)
            _ = try await cluster.admins[owner].send("CLUSTER", "ADDSLOTS", lonely)
            try await cluster.waitUntil("the slot is served again") {
                (try? await impatient.send(RESPCommand("SET", "{lonely}", "x"), key: "{lonely}"))
                    == .simpleString(bytes("OK"))
            }
        }
    }
}
