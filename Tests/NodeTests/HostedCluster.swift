import Foundation
import Node
import RESP
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The whole pipeline spread over four test hosts: a 3+3 Valkey Cluster on hosts 1–3 (host *i* runs a primary on
/// `:6379` and, on `:6380`, the replica of host *i*+1's primary — host 3's follows host 1's), and on each of them
/// `valkeyflight flight` (`:8815`), `valkeyflight worker` (the processor `scripts/chaos-processor.py`) and
/// `valkeyflight coordinator` (`:8816`); host 4 is the client (`scripts/chaos-client.py`, pyarrow). Every
/// valkey-server also listens on a Unix socket in the scope's directory: the test inspects and steers the cluster
/// through it (the hosts' addresses do not exist outside them; a Unix socket does not depend on the network).
///
/// Everything runs inside ``withTestHosts(count:_:)``, so every process and namespace goes on every path out; the
/// scope's directory (sockets, `nodes.conf` files, data directories, logs) is removed too.
final class HostedCluster: Sendable {
    static let primaryPort = 6379
    static let replicaPort = 6380
    static let flightPort = 8815
    static let coordinatorPort = 8816
    /// Slot ranges of host 1, 2 and 3's primaries.
    static let slotRanges = [(0, 5460), (5461, 10922), (10923, 16383)]

    struct Options: Sendable {
        /// The queue every worker claims from and the client submits to.
        var queue: String
        /// Per host 1–3: whether its Flight node keeps its batches in a `--data-dir`.
        var durable: [Bool] = [true, true, true]
        var lease = "2s"
        var maxAttempts = 10
        var concurrency = 2
        /// `CHAOS_PROCESS_SECONDS` of the processor: how long each batch takes.
        var processSeconds = 0.0
    }

    enum Role: String, Sendable {
        case primary, replica, flight, worker, coordinator
    }

    let hosts: [TestHost]
    let options: Options
    let directory: String
    /// The seeds every process is given: the three primaries.
    let valkeyURL: String
    private let children = Mutex<[String: TestChildProcess]>([:])
    /// stderr of the workers that were killed (their successors' stderr is read live).
    private let deadWorkerLogs = Mutex<[String]>([])

    private init(hosts: [TestHost], options: Options, directory: String) {
        self.hosts = hosts
        self.options = options
        self.directory = directory
        self.valkeyURL = hosts.prefix(3).map { "valkey://\($0.address):\(Self.primaryPort)" }.joined(separator: ",")
    }

    /// Makes four test hosts and the cluster and pipeline on them, runs `body`, removes everything.
    static func with<T>(_ options: Options, _ body: (HostedCluster) async throws -> T) async throws -> T {
        let directory = "/tmp/vf-hc-\(getpid())-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: directory + "/marks", withIntermediateDirectories: true)
        // Removed once the hosts and every process in them are gone (a server could still write there before).
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await withTestHosts(count: 4) { hosts in
            let cluster = HostedCluster(hosts: hosts, options: options, directory: directory)
            try await cluster.startValkey()
            for host in 1...3 {
                try await cluster.startFlight(host)
                try await cluster.startCoordinator(host)
                try cluster.startWorker(host)
            }
            return try await body(cluster)
        }
    }

    // MARK: Processes

    func child(_ role: Role, _ host: Int) -> TestChildProcess? {
        self.children.withLock { $0["\(role.rawValue)\(host)"] }
    }

    private func keep(_ child: TestChildProcess, _ role: Role, _ host: Int) {
        self.children.withLock { $0["\(role.rawValue)\(host)"] = child }
    }

    /// The Flight node of host 1–3 as the others dial it.
    func location(_ host: Int) -> String { "grpc://\(self.hosts[host - 1].address):\(Self.flightPort)" }

    var locations: [String] { (1...3).map(self.location) }

    /// The Unix socket of the valkey-server of `host` on `port`.
    func socket(_ host: Int, _ port: Int) -> String { "\(self.directory)/v\(host)-\(port).sock" }

    /// Starts (or restarts, with its `nodes.conf` and so its identity) the valkey-server of `host` on `port`.
    func startValkeyServer(_ host: Int, _ port: Int) async throws {
        let binary = try ValkeyTestServers.binary("valkey-server")
        let address = self.hosts[host - 1].address
        let data = "\(self.directory)/valkey-\(host)-\(port)"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let server = try self.hosts[host - 1].spawn(URL(fileURLWithPath: binary), [
            "--bind", address, "--port", "\(port)", "--unixsocket", self.socket(host, port), "--unixsocketperm", "700",
            "--dir", data, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000", "--cluster-announce-ip", address,
            "--cluster-replica-validity-factor", "0",
            "--save", "", "--appendonly", "no", "--protected-mode", "no",
        ])
        var ready = false
        for _ in 0..<400 where !ready {
            guard let line = await server.nextLine(within: 15) else { break }
            ready = line.contains("Ready to accept connections")
        }
        guard ready else {
            server.terminate()
            throw FlightTestError(
                "valkey-server \(address):\(port) did not start: \(server.stdout.suffix(2000)) \(server.stderr)")
        }
        self.keep(server, port == Self.primaryPort ? .primary : .replica, host)
    }

    /// A client on the Unix socket of the valkey-server of `host` on `port` (closed by the caller).
    func admin(_ host: Int, _ port: Int) throws -> RESPClient {
        try ValkeyTestServers.adminClient("unix://\(self.socket(host, port))")
    }

    /// `INFO replication` of one server ("" when it does not answer).
    func replicationInfo(_ host: Int, _ port: Int) async -> String {
        guard let admin = try? self.admin(host, port) else { return "" }
        defer { admin.close() }
        return (try? await admin.send("INFO", "replication").string) ?? ""
    }

    /// Waits until the server of `host` on `port` is a primary (a replica promoted by a failover).
    func waitPrimary(_ host: Int, _ port: Int, within seconds: Int = 30) async throws {
        let name = "\(self.hosts[host - 1].address):\(port)"
        try await ValkeyTestServers.waitUntil("\(name) is a primary", timeout: .seconds(seconds)) {
            await self.replicationInfo(host, port).contains("role:master")
        }
    }

    /// Waits until the server of `host` on `port` is a replica whose link to its primary is up.
    func waitReplicaInSync(_ host: Int, _ port: Int, within seconds: Int = 30) async throws {
        let name = "\(self.hosts[host - 1].address):\(port)"
        try await ValkeyTestServers.waitUntil("\(name) replicates", timeout: .seconds(seconds)) {
            let info = await self.replicationInfo(host, port)
            return info.contains("role:slave") && info.contains("master_link_status:up")
        }
    }

    /// Six servers, slots assigned by hand, met, replicas attached; returns once every node says the cluster is ok
    /// and every replica is in sync.
    private func startValkey() async throws {
        for host in 1...3 {
            try await self.startValkeyServer(host, Self.primaryPort)
            try await self.startValkeyServer(host, Self.replicaPort)
        }
        let all = (1...3).flatMap { [($0, Self.primaryPort), ($0, Self.replicaPort)] }
        let admins = try all.map { try self.admin($0.0, $0.1) }
        defer { for admin in admins { admin.close() } }
        var ids: [String] = []
        for admin in admins { ids.append(try await admin.send("CLUSTER", "MYID").string ?? "") }
        for host in 1...3 {
            let (low, high) = Self.slotRanges[host - 1]
            _ = try await admins[(host - 1) * 2].send("CLUSTER", "ADDSLOTSRANGE", "\(low)", "\(high)")
        }
        for (host, port) in all.dropFirst() {
            _ = try await admins[0].send("CLUSTER", "MEET", self.hosts[host - 1].address, "\(port)")
        }
        try await ValkeyTestServers.waitUntil("every node knows all six", timeout: .seconds(30)) {
            for admin in admins {
                let info = try await admin.send("CLUSTER", "INFO").string ?? ""
                if !info.contains("cluster_known_nodes:6") { return false }
            }
            return true
        }
        for host in 1...3 {
            // Host i's replica follows host i+1's primary (host 3's: host 1's).
            let primary = ids[(host % 3) * 2]
            try await ValkeyTestServers.waitUntil("the replica on host \(host) attaches", timeout: .seconds(30)) {
                (try? await admins[(host - 1) * 2 + 1].send("CLUSTER", "REPLICATE", primary)) != nil
            }
        }
        try await ValkeyTestServers.waitUntil("the cluster is ok on every node", timeout: .seconds(30)) {
            for admin in admins {
                let info = try await admin.send("CLUSTER", "INFO").string ?? ""
                guard info.contains("cluster_state:ok"), info.contains("cluster_slots_ok:16384") else { return false }
            }
            return true
        }
        for host in 1...3 { try await self.waitReplicaInSync(host, Self.replicaPort) }
    }

    /// Starts (or restarts) the Flight node of `host`: `--data-dir` when the options say so.
    func startFlight(_ host: Int, durable: Bool? = nil) async throws {
        var arguments = [
            "flight", "--valkey", self.valkeyURL, "--listen", "0.0.0.0:\(Self.flightPort)",
            "--advertise", self.location(host), "--valkey-replicas-ack", "1",
            "--max-attempts", "\(self.options.maxAttempts)",
            "--grace", "1s",
        ]
        if durable ?? self.options.durable[host - 1] {
            arguments += ["--data-dir", "\(self.directory)/flight-\(host)", "--fsync", "never"]
        }
        let flight = try self.hosts[host - 1].valkeyflight(arguments)
        guard let line = await flight.nextLine(within: 30), line.hasPrefix("listening on ") else {
            flight.terminate()
            throw FlightTestError("flight node on host \(host) did not start: \(flight.stderr)")
        }
        self.keep(flight, .flight, host)
    }

    private func startCoordinator(_ host: Int) async throws {
        let coordinator = try self.hosts[host - 1].valkeyflight([
            "coordinator", "--valkey", self.valkeyURL,
            "--listen", "\(self.hosts[host - 1].address):\(Self.coordinatorPort)",
            "--valkey-replicas-ack", "1", "--grace", "1s",
        ])
        guard let line = await coordinator.nextLine(within: 30), line.hasPrefix("listening on ") else {
            coordinator.terminate()
            throw FlightTestError("coordinator on host \(host) did not start: \(coordinator.stderr)")
        }
        self.keep(coordinator, .coordinator, host)
    }

    /// Starts (or restarts) the worker of `host`.
    func startWorker(_ host: Int) throws {
        let processor = "\(PyArrow.python.path) \(CLI.packageRoot.path)/scripts/chaos-processor.py"
        let worker = try self.hosts[host - 1].valkeyflight([
            "worker", "--valkey", self.valkeyURL, "--queue", self.options.queue,
            "--concurrency", "\(self.options.concurrency)",
            "--lease", self.options.lease, "--max-attempts", "\(self.options.maxAttempts)", "--retry-base", "100ms",
            "--retry-max", "1s", "--exec-persistent", processor, "--valkey-replicas-ack", "1", "--grace", "1s",
        ], environment: [
            "CHAOS_PROCESS_SECONDS": "\(self.options.processSeconds)", "CHAOS_MARK_DIR": "\(self.directory)/marks",
            "CHAOS_HOST": "h\(host)", "PYTHONDONTWRITEBYTECODE": "1",
        ])
        self.keep(worker, .worker, host)
    }

    /// SIGKILLs the process of `role` on `host` and waits until it is gone.
    func kill(_ role: Role, _ host: Int) async throws {
        guard let child = self.child(role, host) else { throw FlightTestError("no \(role) on host \(host)") }
        child.send(SIGKILL)
        guard await child.waitForExit(within: 15) else {
            throw FlightTestError("\(role) on host \(host) survived SIGKILL")
        }
        if role == .worker { self.deadWorkerLogs.withLock { $0.append(child.stderr) } }
    }

    /// SIGSTOP / SIGCONT every worker.
    func pauseWorkers(_ paused: Bool) {
        for host in 1...3 { self.child(.worker, host)?.send(paused ? SIGSTOP : SIGCONT) }
    }

    /// Keys the processors on `host` hold right now (CHAOS_MARK_DIR: a file per processor while it works).
    func markedKeys(_ host: Int) -> [String] {
        let marks = "\(self.directory)/marks"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: marks)) ?? []
        return names.filter { $0.hasPrefix("h\(host)-") && $0.hasSuffix(".key") }.compactMap {
            try? String(contentsOfFile: "\(marks)/\($0)", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Waits until a processor on `host` holds a batch; returns its key.
    @discardableResult
    func waitMarked(_ host: Int, within seconds: Int = 30) async throws -> String {
        var found: String?
        try await ValkeyTestServers.waitUntil("a processor on host \(host) holds a batch", timeout: .seconds(seconds)) {
            found = self.markedKeys(host).first
            return found != nil
        }
        return found ?? ""
    }

    /// Every worker's stderr, the killed ones' included, each in a file of the scope's directory.
    func workerLogFiles() throws -> [String] {
        let logs = self.deadWorkerLogs.withLock { $0 } + (1...3).compactMap { self.child(.worker, $0)?.stderr }
        return try logs.enumerated().map { index, text in
            let path = "\(self.directory)/worker-\(index).log"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
    }

    // MARK: The client on host 4

    /// `chaos-client.py submit` on host 4 against all three nodes (or `nodes`), in the background.
    func startClient(_ arguments: [String], nodes: [String]? = nil) throws -> TestChildProcess {
        try self.hosts[3].spawn(PyArrow.python, [
            "\(CLI.packageRoot.path)/scripts/chaos-client.py", "submit",
            "--nodes", (nodes ?? self.locations).joined(separator: ","),
            "--queue", self.options.queue, "--timeout", "3",
        ] + arguments, environment: ["PYTHONDONTWRITEBYTECODE": "1"])
    }

    /// Waits until the client has printed `count` ack lines more than `after`.
    func waitAcks(_ client: TestChildProcess, atLeast count: Int, within seconds: Int = 40) async throws {
        let what = "the client has \(count) acknowledged batches"
        try await ValkeyTestServers.waitUntil(what, timeout: .seconds(seconds)) {
            Self.acks(client.stdout).count >= count
        }
    }

    /// Waits until the client has printed an error for `node`.
    func waitSubmitError(_ client: TestChildProcess, node: String, within seconds: Int = 30) async throws {
        try await ValkeyTestServers.waitUntil("a submission to \(node) fails", timeout: .seconds(seconds)) {
            client.stdout.split(separator: "\n").contains { $0.contains("\"error\"") && $0.contains(node) }
        }
    }

    /// The ack lines of a client's output.
    static func acks(_ output: String) -> [PyJSON] {
        output.split(separator: "\n").compactMap { line in
            guard line.contains("\"event\": \"ack\"") else { return nil }
            return try? JSONDecoder().decode(PyJSON.self, from: Data(line.utf8))
        }
    }

    /// Ends a `--until-eof` client (or waits for one that stops by itself) and returns its whole output.
    func finish(_ client: TestChildProcess) async throws -> String {
        client.closeInput()
        guard await client.waitForExit(within: 30) else {
            throw FlightTestError("the client did not stop: \(client.stderr.suffix(2000))")
        }
        guard client.exitStatus == 0 else { throw FlightTestError("the client failed: \(client.stderr.suffix(2000))") }
        return client.stdout
    }

    /// `chaos-client.py verify` on host 4: waits (at most `within` seconds) until every acknowledged batch of
    /// `output` is finished and checks each result; returns its summary.
    func verify(_ output: String, within seconds: Int = 60, show: [String] = []) async throws -> PyJSON {
        let acks = "\(self.directory)/acks-\(UUID().uuidString.prefix(6)).jsonl"
        try output.write(toFile: acks, atomically: true, encoding: .utf8)
        let verifier = try self.hosts[3].spawn(PyArrow.python, [
            "\(CLI.packageRoot.path)/scripts/chaos-client.py", "verify",
            "--nodes", self.locations.joined(separator: ","),
            "--queue", self.options.queue, "--acks", acks, "--timeout", "\(seconds)", "--worker-logs",
        ] + (try self.workerLogFiles()) + (show.isEmpty ? [] : ["--show"] + show),
            environment: ["PYTHONDONTWRITEBYTECODE": "1"])
        verifier.closeInput()
        guard await verifier.waitForExit(within: Double(seconds) + 120) else {
            throw FlightTestError("verify did not finish: \(verifier.stderr.suffix(2000))")
        }
        guard verifier.exitStatus == 0 || verifier.exitStatus == 1 else {
            throw FlightTestError("verify failed: \(verifier.stderr.suffix(3000))")
        }
        return try PyJSON.lastLine(of: verifier.stdout)
    }

    /// Expects what every scenario must hold: nothing acknowledged is lost or stuck, every result is right and from
    /// the attempt that completed the batch, no batch completed twice.
    static func expectAccounted(_ summary: PyJSON, sourceLocation: SourceLocation = #_sourceLocation) {
        let checks = [("lost", "acknowledged but lost"), ("stuck", "not finished"), ("wrong_results", "wrong results"),
                      ("stale_results", "results of stale attempts"), ("completed_twice", "completed twice")]
        for (field, what) in checks {
            #expect(summary[field].array.isEmpty, "\(what): \(summary[field])", sourceLocation: sourceLocation)
        }
        #expect(summary["ok"] == true, "\(summary)", sourceLocation: sourceLocation)
    }

    /// A queue name whose slot host `host`'s primary serves.
    static func queue(onHost host: Int, prefix: String) -> String {
        let (low, high) = Self.slotRanges[host - 1]
        for index in 0..<10_000 {
            let name = "\(prefix)\(index)"
            if (low...high).contains(HashSlot.slot(for: name)) { return name }
        }
        return prefix
    }
}
