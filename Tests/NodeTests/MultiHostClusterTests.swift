import Foundation
import Node
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The pipeline on a 3+3 Valkey Cluster spread over three test hosts, each with a Flight node, a worker and a
/// coordinator, and a pyarrow client on a fourth host submitting to all three nodes (``HostedCluster``). Each test
/// injects one fault while batches flow and then accounts for every batch the client was told was stored: finished,
/// its result right (price × 2, its own key) and made by the attempt that completed it, none completed twice.
@Suite("Multi-host cluster", .serialized, .enabled(if: TestHosts.unavailable == nil, TestHosts.skipReason))
struct MultiHostClusterTests {
    @Test("a host cut off for seconds (its primary fails over, its node and worker go silent) and healed: nothing acknowledged is lost")
    func hostCutOff() async throws {
        // The queue lives on host 1's primary; host 2 is cut: its primary (another slot range) fails over to host
        // 1's replica, its Flight node's batches cannot be fetched, its worker loses its leases.
        let options = HostedCluster.Options(queue: HostedCluster.queue(onHost: 1, prefix: "cut"), processSeconds: 0.05)
        try await HostedCluster.with(options) { cluster in
            let client = try cluster.startClient(["--until-eof", "--interval", "0.05"])
            try await cluster.waitAcks(client, atLeast: 15)
            try await cluster.waitMarked(2)
            try cluster.hosts[1].cut()
            // Cut long enough for the cluster to notice: host 2's primary is replaced by its replica on host 1.
            try await cluster.waitPrimary(1, HostedCluster.replicaPort)
            try await cluster.waitSubmitError(client, node: cluster.location(2))
            let beforeHeal = HostedCluster.acks(client.stdout).count
            try cluster.hosts[1].heal()
            // Host 2's old primary comes back as a replica of its replacement.
            try await cluster.waitReplicaInSync(2, HostedCluster.primaryPort)
            try await cluster.waitAcks(client, atLeast: beforeHeal + 15)
            let output = try await cluster.finish(client)
            let summary = try await cluster.verify(output)
            HostedCluster.expectAccounted(summary)
            #expect(summary["completed"] == summary["acknowledged"], "\(summary)")
            #expect(HostedCluster.acks(output).contains { $0["node"].string == cluster.location(2) })
        }
    }

    @Test("the queue's Valkey primary SIGKILLed while batches flow: its replica takes over, no acknowledged batch is lost")
    func primaryKilled() async throws {
        let options = HostedCluster.Options(queue: HostedCluster.queue(onHost: 1, prefix: "failover"))
        try await HostedCluster.with(options) { cluster in
            let client = try cluster.startClient(["--until-eof"])
            try await cluster.waitAcks(client, atLeast: 30)
            // Every registration acknowledged so far reached host 3's replica (WAIT 1) before the client heard of it.
            try await cluster.kill(.primary, 1)
            let killedAfter = HostedCluster.acks(client.stdout).count
            try await cluster.waitPrimary(3, HostedCluster.replicaPort)
            try await cluster.waitAcks(client, atLeast: killedAfter + 12)
            // The killed primary, restarted with its nodes.conf (and no data), rejoins as the new primary's replica.
            try await cluster.startValkeyServer(1, HostedCluster.primaryPort)
            try await cluster.waitReplicaInSync(1, HostedCluster.primaryPort)
            let output = try await cluster.finish(client)
            let summary = try await cluster.verify(output)
            HostedCluster.expectAccounted(summary)
            #expect(summary["completed"] == summary["acknowledged"], "\(summary)")
        }
    }

    @Test("a worker SIGKILLed while it holds batches and restarted: its batches are reaped and completed elsewhere")
    func workerKilled() async throws {
        let options = HostedCluster.Options(queue: HostedCluster.queue(onHost: 2, prefix: "wkill"), processSeconds: 0.6)
        try await HostedCluster.with(options) { cluster in
            let client = try cluster.startClient(["--until-eof", "--interval", "0.5"])
            try await cluster.waitAcks(client, atLeast: 10)
            // A processor on host 3 is in the middle of a batch (0.6 s of work each): stopped at once,
            // its worker can neither complete nor extend it; then it is killed.
            let held = try await cluster.waitMarked(3)
            cluster.child(.worker, 3)?.send(SIGSTOP)
            try await cluster.kill(.worker, 3)
            let killedAfter = HostedCluster.acks(client.stdout).count
            try await cluster.waitAcks(client, atLeast: killedAfter + 6)
            try cluster.startWorker(3)
            try await cluster.waitAcks(client, atLeast: killedAfter + 12)
            let output = try await cluster.finish(client)
            let summary = try await cluster.verify(output, show: [held])
            HostedCluster.expectAccounted(summary)
            #expect(summary["completed"] == summary["acknowledged"], "\(summary)")
            // The batch the killed worker held was taken from it when its lease ran out and completed by a later
            // attempt (the result's own attempt column says which, checked above).
            let status = summary["shown"][held]
            #expect(status["status"] == "completed" && (status["attempts"].int ?? 0) >= 2, "\(held): \(status)")
        }
    }

    @Test("Flight nodes SIGKILLed before their batches are processed: without --data-dir they fail 'data gone', with it they complete after the restart")
    func flightNodeKilled() async throws {
        let options = HostedCluster.Options(
            queue: HostedCluster.queue(onHost: 3, prefix: "fkill"), durable: [false, true, true])
        try await HostedCluster.with(options) { cluster in
            cluster.pauseWorkers(true)
            let client = try cluster.startClient(["--per-node", "4"])
            let output = try await cluster.finish(client)
            let acks = HostedCluster.acks(output)
            try #require(acks.count == 12, "\(output)")
            for host in [1, 2] {
                try await cluster.kill(.flight, host)
                try await cluster.startFlight(host)
            }
            cluster.pauseWorkers(false)
            let summary = try await cluster.verify(output)
            HostedCluster.expectAccounted(summary)
            // Host 1 kept its batches in memory only: gone, each failed at once.
            #expect(summary["failed"]["input data gone"] == 4, "\(summary)")
            #expect(summary["completed"] == 8, "\(summary)")
        }
    }
}

@Suite("Hosted cluster cleanup", .serialized, .enabled(if: TestHosts.unavailable == nil, TestHosts.skipReason))
struct HostedClusterCleanupTests {
    @Test("a test that fails inside the hosted cluster leaves nothing behind: processes, namespaces, its directory")
    func cleanupAfterFailure() async throws {
        struct Planned: Error {}
        let made = TestSlot<(prefix: String, directory: String, pids: [Int32])>()
        await #expect(throws: Planned.self) {
            try await HostedCluster.with(HostedCluster.Options(queue: "cleanup")) { cluster -> Void in
                let roles: [HostedCluster.Role] = [.primary, .replica, .flight, .worker, .coordinator]
                let pids = (1...3).flatMap { host in roles.compactMap { cluster.child($0, host)?.pid } }
                made.fill((cluster.hosts[0].set.prefix, cluster.directory, pids))
                throw Planned()
            }
        }
        let (prefix, directory, pids) = await made.value
        #expect(pids.count == 15)
        #expect(TestHosts.namespaces(prefix: prefix + "-").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: directory))
        for pid in pids { #expect(await waitGone(pid, within: 10), "process \(pid) still runs") }
    }
}

@Suite("Valkey replica count")
struct ValkeyReplicaCountTests {
    /// Starts valkey-server on a free loopback port with `arguments` (another port when the one picked was taken).
    static func server(_ arguments: [String]) async throws -> (EmbeddedValkeyServer, Int) {
        let binary = try ValkeyTestServers.binary("valkey-server")
        var lastError: any Error = ValkeyScopeError("no port tried")
        for _ in 0..<5 {
            let port = ValkeyTestServers.freeClusterPort()
            do {
                let server = try await EmbeddedValkeyServer.start(
                    binary: binary, directory: nil, appendOnly: false,
                    arguments: ["--port", "\(port)", "--bind", "127.0.0.1"] + arguments)
                return (server, port)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    @Test("a standalone primary counts its connected replica, so --valkey-replicas-ack defaults to 1 there")
    func standaloneReplicaCounted() async throws {
        let (primary, port) = try await Self.server([])
        var servers = [primary]
        do {
            let connection = try await ValkeyConnection.connect(primary.url)
            defer { connection.close() }
            #expect(try await connection.replicaCount() == 0)
            let (replica, _) = try await Self.server(["--replicaof", "127.0.0.1", "\(port)"])
            servers.append(replica)
            let admin = try ValkeyTestServers.adminClient(primary.url)
            defer { admin.close() }
            try await ValkeyTestServers.waitUntil("the replica is connected") {
                (try await admin.send("INFO", "replication").string ?? "").contains("connected_slaves:1")
            }
            // INFO's lines end in CRLF, one Character in Swift: splitting on "\r" or "\n" alone found no line.
            #expect(try await connection.replicaCount() == 1)
        } catch {
            for server in servers { await server.stop() }
            throw error
        }
        for server in servers { await server.stop() }
    }
}
