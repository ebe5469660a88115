import Synchronization

/// A Valkey Cluster client: routes each command to the primary serving its key's hash slot, follows MOVED
/// (and reloads the topology) and ASK (ASKING on the same connection), retries with backoff on TRYAGAIN,
/// CLUSTERDOWN, LOADING and MASTERDOWN, and reloads the topology when a node cannot be reached (failover).
///
/// The topology comes from `CLUSTER SHARDS`, or `CLUSTER SLOTS` on servers without it. Each primary gets a
/// `RESPClient` (one pipelined connection). A command that was in flight when its connection dropped is
/// not resent: it fails with `.connectionClosed`, as on a standalone client.
public final class RESPClusterClient: Sendable {
    /// Settings for every node connection (endpoint is replaced per node).
    public let configuration: RESPConfiguration
    /// Nodes asked for the topology when no known primary answers.
    public let seeds: [RESPEndpoint]
    /// Redirections and retries for at most this many attempts per command.
    public let maxAttempts: Int

    struct Topology {
        /// Index into `primaries` per slot, -1 when unassigned.
        var slots = [Int16](repeating: -1, count: HashSlot.count)
        var primaries: [RESPEndpoint] = []
    }

    private struct State {
        var topology: Topology?
        var clients: [RESPEndpoint: RESPClient] = [:]
        var refresh: Task<Result<Void, RESPError>, Never>?
        var closed = false
    }

    private let state = Mutex(State())
    private let counters = Counters()

    /// Counts of redirections and topology reloads, for tests and monitoring.
    public struct Statistics: Sendable, Hashable {
        /// MOVED redirections followed.
        public var moved: Int
        /// ASK redirections followed.
        public var ask: Int
        /// Retries after TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, unserved slots or unreachable nodes.
        public var retries: Int
        /// Topology loads.
        public var refreshes: Int
    }

    /// A client that discovers the cluster from `seeds` (any reachable node will do).
    public init(seeds: [RESPEndpoint], configuration: RESPConfiguration, maxAttempts: Int = 16) {
        self.seeds = seeds
        var node = configuration
        node.database = 0
        // Fail fast on an unreachable node: the topology reload finds its replacement.
        node.reconnect.maxAttempts = min(node.reconnect.maxAttempts, 2)
        self.configuration = node
        self.maxAttempts = max(1, maxAttempts)
    }

    /// Counts since the client was made.
    public var statistics: Statistics { self.counters.snapshot() }

    /// Sends `command`, whose keys all hash to the slot of `key`, to the primary serving it.
    /// - Throws: `.server` for error replies other than redirections; `.connectionClosed` if the command was
    ///   in flight when a connection dropped; `.clusterUnavailable` when no node serves the slot after
    ///   `maxAttempts` tries; `.clientClosed` after `close()`.
    public func send(_ command: RESPCommand, key: String) async throws(RESPError) -> RESPValue {
        try await self.send(command, slot: HashSlot.slot(for: key))
    }

    /// Sends `command` after checking that all `keys` share one slot.
    /// - Throws: `.crossSlot` when they do not; otherwise as `send(_:key:)`.
    public func send(_ command: RESPCommand, keys: [String]) async throws(RESPError) -> RESPValue {
        try await self.send(command, slot: try Self.commonSlot(keys, command: command.name))
    }

    /// Sends `command` to the primary serving `slot`; see `send(_:key:)`.
    public func send(_ command: RESPCommand, slot: Int) async throws(RESPError) -> RESPValue {
        try await self.route(slot: slot) { client, asking in
            if asking { return await Self.asking(command, on: client) }
            return await Self.result { () throws(RESPError) in try await client.send(command) }
        }
    }

    /// Runs `script` (EVALSHA, loading it on NOSCRIPT) on the primary serving its keys.
    /// - Throws: `.crossSlot` when the keys span slots; otherwise as `send(_:key:)`.
    public func evalScript(_ script: RESPScript, keys: [String], arguments: [any RESPArgument] = [])
        async throws(RESPError) -> RESPValue
    {
        let slot = keys.isEmpty ? 0 : try Self.commonSlot(keys, command: "EVALSHA")
        let command = script.command(keys: keys, arguments: arguments)
        return try await self.route(slot: slot) { client, asking in
            if !asking {
                return await Self.result { () throws(RESPError) in
                    try await client.evalScript(script, keys: keys, arguments: arguments)
                }
            }
            let first = await Self.asking(command, on: client)
            guard case .failure(let error) = first, error.serverCode == "NOSCRIPT" else { return first }
            if case .failure(let loadError) = await Self.result({ () throws(RESPError) in try await client.load(script)
            }) {
                return .failure(loadError)
            }
            return await Self.asking(command, on: client)
        }
    }

    /// Runs `commands` in MULTI/EXEC on the primary serving their keys (all in one slot), following MOVED and
    /// ASK (ASKING before MULTI) and retrying TRYAGAIN/CLUSTERDOWN; a redirection at queue time aborts the
    /// transaction unexecuted, so it is safe to resend. One result per command.
    /// - Throws: `.crossSlot` when the keys span slots; `.server(EXECABORT)` for another queue-time rejection;
    ///   otherwise as `send(_:key:)`.
    public func transaction(_ commands: [RESPCommand], keys: [String]) async throws(RESPError) -> [Result<
        RESPValue, RESPError
    >] {
        let slot = try Self.commonSlot(keys, command: "MULTI")
        return try await self.route(slot: slot) { client, asking in
            do throws(RESPError) {
                let connection = try await client.sharedConnection()
                guard let results = try await RESPClient.execute(commands, on: connection, asking: asking) else {
                    return .failure(.transactionAborted(attempts: 1))
                }
                return .success(results)
            } catch {
                return .failure(error)
            }
        }
    }

    /// Sends many commands, each with its key: split into one pipeline per node, sent concurrently, and
    /// reassembled in the original order. Commands redirected or told to retry are resent one by one.
    /// - Throws: only when the topology cannot be loaded; per-command failures are in the results.
    public func pipeline(_ commands: [(command: RESPCommand, key: String)]) async throws(RESPError) -> [Result<
        RESPValue, RESPError
    >] {
        let slots = commands.map { HashSlot.slot(for: $0.key) }
        let topology = try await self.currentTopology()
        var groups: [Int: [Int]] = [:]
        for (index, slot) in slots.enumerated() { groups[Int(topology.slots[slot]), default: []].append(index) }
        var results = [Result<RESPValue, RESPError>](
            repeating: .failure(.clusterUnavailable(slot: nil, reason: "not sent")), count: commands.count)
        let parts = await withTaskGroup(of: [(Int, Result<RESPValue, RESPError>)].self) { group in
            for (node, indices) in groups {
                group.addTask {
                    guard node >= 0, node < topology.primaries.count else {
                        return indices.map {
                            ($0, .failure(.clusterUnavailable(slot: slots[$0], reason: "slot not served")))
                        }
                    }
                    let client = self.client(for: topology.primaries[node])
                    let replies = await Self.result { () throws(RESPError) in
                        try await client.pipeline(indices.map { commands[$0].command })
                    }
                    switch replies {
                    case .success(let replies): return Array(zip(indices, replies))
                    case .failure(let error): return indices.map { ($0, .failure(error)) }
                    }
                }
            }
            var all: [(Int, Result<RESPValue, RESPError>)] = []
            for await part in group { all += part }
            return all
        }
        for (index, result) in parts { results[index] = result }
        for index in results.indices {
            guard case .failure(let error) = results[index], Self.isRoutingError(error) else { continue }
            results[index] = await Self.result { () throws(RESPError) in
                try await self.send(commands[index].command, slot: slots[index])
            }
        }
        return results
    }

    /// Runs `body` with a connection of its own to the primary serving `key`'s slot (for blocking commands
    /// such as BLPOP, which must not hold up the shared pipelined connection). When `body` fails with a
    /// redirection (MOVED, ASK), a retry code (TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN) or an unreachable node,
    /// the command did not run there: the topology is reloaded and `body` runs again on the slot's primary, up
    /// to `maxAttempts` times. ASK is not followed (a blocking command would need ASKING): the retry goes to
    /// the slot's owner once the migration ends.
    /// - Throws: whatever `body` throws; `.clusterUnavailable` when no node serves the slot.
    public func withDedicatedConnection<T: Sendable>(
        forKey key: String, _ body: (RESPDedicatedConnection) async throws(RESPError) -> T
    ) async throws(RESPError) -> T {
        let slot = HashSlot.slot(for: key)
        var lastError = RESPError.clusterUnavailable(slot: slot, reason: "no attempt made")
        for attempt in 1...self.maxAttempts {
            let topology = try await self.currentTopology()
            let index = Int(topology.slots[slot])
            guard index >= 0, index < topology.primaries.count else {
                lastError = .clusterUnavailable(slot: slot, reason: "no primary serves the slot")
                self.counters.add(retries: 1)
                try await self.pause(attempt, refresh: true)
                continue
            }
            let client = self.client(for: topology.primaries[index])
            do throws(RESPError) {
                return try await client.withDedicatedConnection(body)
            } catch {
                guard Self.isRoutingError(error) else { throw error }
                lastError = error
                if error.serverCode == "MOVED" { self.counters.add(moved: 1) } else { self.counters.add(retries: 1) }
                try await self.pause(attempt, refresh: true)
            }
        }
        throw lastError
    }

    /// Closes every node connection; later calls throw `.clientClosed`.
    public func close() {
        let clients = self.state.withLock { state in
            state.closed = true
            defer { state.clients = [:] }
            return Array(state.clients.values)
        }
        for client in clients { client.close() }
    }

    /// Reloads the slot map now (done automatically on MOVED and unreachable nodes).
    /// - Throws: `.clusterUnavailable` when no known node answers.
    public func refreshTopology() async throws(RESPError) {
        try await self.reload().get()
    }

    // MARK: Routing

    private static func result(_ body: () async throws(RESPError) -> RESPValue) async -> Result<RESPValue, RESPError> {
        do throws(RESPError) { return .success(try await body()) } catch { return .failure(error) }
    }

    private static func result(_ body: () async throws(RESPError) -> [Result<RESPValue, RESPError>]) async -> Result<
        [Result<RESPValue, RESPError>], RESPError
    > {
        do throws(RESPError) { return .success(try await body()) } catch { return .failure(error) }
    }

    private static func result(_ body: () async throws(RESPError) -> Void) async -> Result<Void, RESPError> {
        do throws(RESPError) { return .success(try await body()) } catch { return .failure(error) }
    }

    /// ASKING and `command` back to back on the node's connection; the result of `command`.
    private static func asking(_ command: RESPCommand, on client: RESPClient) async -> Result<RESPValue, RESPError> {
        do throws(RESPError) {
            let results = try await client.pipeline([RESPCommand("ASKING"), command])
            return results.last ?? .failure(.clientClosed)
        } catch {
            return .failure(error)
        }
    }

    static func commonSlot(_ keys: [String], command: String) throws(RESPError) -> Int {
        let slots = keys.map { HashSlot.slot(for: $0) }
        guard let first = slots.first else { return 0 }
        guard slots.allSatisfy({ $0 == first }) else {
            throw .crossSlot(command: command, slots: Array(Set(slots)).sorted())
        }
        return first
    }

    private static func isRoutingError(_ error: RESPError) -> Bool {
        switch error.serverCode {
        case "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN": return true
        default: break
        }
        if case .reconnectFailed = error { return true }
        return false
    }

    private func route<T: Sendable>(
        slot: Int, _ operation: @Sendable (RESPClient, _ asking: Bool) async -> Result<T, RESPError>
    ) async throws(RESPError) -> T {
        var target: RESPEndpoint?
        var asking = false
        var lastError = RESPError.clusterUnavailable(slot: slot, reason: "no attempt made")
        for attempt in 1...self.maxAttempts {
            let endpoint: RESPEndpoint
            if let target {
                endpoint = target
            } else {
                let topology = try await self.currentTopology()
                let index = Int(topology.slots[slot])
                guard index >= 0, index < topology.primaries.count else {
                    lastError = .clusterUnavailable(slot: slot, reason: "no primary serves the slot")
                    self.counters.add(retries: 1)
                    try await self.pause(attempt, refresh: true)
                    continue
                }
                endpoint = topology.primaries[index]
            }
            let client = self.client(for: endpoint)
            let outcome = await operation(client, asking)
            target = nil
            asking = false
            guard case .failure(let error) = outcome else { return try outcome.get() }
            lastError = error
            switch error.serverCode {
            case "MOVED":
                self.counters.add(moved: 1)
                target = Self.redirectTarget(error, from: endpoint)
                _ = await self.reload()
            case "ASK":
                self.counters.add(ask: 1)
                target = Self.redirectTarget(error, from: endpoint)
                asking = true
            case "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN":
                self.counters.add(retries: 1)
                try await self.pause(attempt, refresh: error.serverCode != "TRYAGAIN")
            default:
                if case .reconnectFailed = error {
                    // The node is gone (failover): reload and go to the slot's new primary.
                    self.counters.add(retries: 1)
                    try await self.pause(attempt, refresh: true)
                } else {
                    if case .connectionClosed = error { self.reloadInBackground() }
                    throw error
                }
            }
        }
        throw lastError
    }

    /// Backoff (with jitter) between retries, optionally reloading the topology first.
    private func pause(_ attempt: Int, refresh: Bool) async throws(RESPError) {
        if self.state.withLock({ $0.closed }) { throw .clientClosed }
        if refresh { _ = await self.reload() }
        let delay = min(Duration.milliseconds(500), .milliseconds(10) * (1 << min(attempt, 6)))
        try? await Task.sleep(for: delay * Double.random(in: 0.5...1.0))
    }

    /// `MOVED 3999 127.0.0.1:6381` → the endpoint; split on the last colon, empty host = same host.
    static func redirectTarget(_ error: RESPError, from current: RESPEndpoint) -> RESPEndpoint? {
        guard case .server(_, let message, _) = error, let space = message.firstIndex(of: " ") else { return nil }
        let address = message[message.index(after: space)...]
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            return nil
        }
        var host = String(address[..<colon])
        if host.isEmpty, case .tcp(let currentHost, _) = current { host = currentHost }
        return .tcp(host: host, port: port)
    }

    private func client(for endpoint: RESPEndpoint) -> RESPClient {
        self.state.withLock { state in
            if let client = state.clients[endpoint] { return client }
            var configuration = self.configuration
            configuration.endpoint = endpoint
            let client = RESPClient(configuration: configuration)
            state.clients[endpoint] = client
            return client
        }
    }

    // MARK: Topology

    private func currentTopology() async throws(RESPError) -> Topology {
        if let topology = self.state.withLock({ $0.topology }) { return topology }
        try await self.reload().get()
        guard let topology = self.state.withLock({ $0.topology }) else {
            throw .clusterUnavailable(slot: nil, reason: "no topology loaded")
        }
        return topology
    }

    private func reloadInBackground() {
        Task { _ = await self.reload() }
    }

    /// Reloads the topology; concurrent callers share one reload.
    private func reload() async -> Result<Void, RESPError> {
        let task: Task<Result<Void, RESPError>, Never>? = self.state.withLock { state in
            if state.closed { return nil }
            if let running = state.refresh { return running }
            let task = Task { await self.loadTopology() }
            state.refresh = task
            return task
        }
        guard let task else { return .failure(.clientClosed) }
        let result = await task.value
        self.state.withLock { state in
            if state.refresh == task { state.refresh = nil }
        }
        return result
    }

    private func loadTopology() async -> Result<Void, RESPError> {
        self.counters.add(refreshes: 1)
        var candidates = self.state.withLock { $0.topology?.primaries ?? [] }
        for seed in self.seeds where !candidates.contains(seed) { candidates.append(seed) }
        var lastError = "no seed nodes"
        for endpoint in candidates {
            let client = self.client(for: endpoint)
            do throws(RESPError) {
                let topology: Topology
                do throws(RESPError) {
                    topology = try Self.parseShards(try await client.send("CLUSTER", "SHARDS"), queried: endpoint)
                } catch  where error.serverCode == "ERR" {
                    topology = try Self.parseSlots(try await client.send("CLUSTER", "SLOTS"), queried: endpoint)
                }
                self.state.withLock { $0.topology = topology }
                return .success(())
            } catch {
                lastError = "\(endpoint): \(error)"
            }
        }
        return .failure(
            .clusterUnavailable(slot: nil, reason: "cannot load the topology from any node (last: \(lastError))"))
    }

    private static func host(of endpoint: RESPEndpoint) -> String {
        if case .tcp(let host, _) = endpoint { return host }
        return "127.0.0.1"
    }

    /// `CLUSTER SHARDS`: per shard, flat inclusive slot ranges and nodes; the online primary serves them.
    static func parseShards(_ reply: RESPValue, queried: RESPEndpoint) throws(RESPError) -> Topology {
        guard let shards = reply.elements else {
            throw .unexpectedReply(command: "CLUSTER SHARDS", expected: "an array of shards", found: reply.summary)
        }
        var topology = Topology()
        for shard in shards {
            guard let ranges = shard["slots"]?.elements, let nodes = shard["nodes"]?.elements else {
                throw .unexpectedReply(
                    command: "CLUSTER SHARDS", expected: "slots and nodes per shard", found: shard.summary)
            }
            let primary = nodes.first { node in
                let role = node["role"]?.string
                return (role == "master" || role == "primary") && (node["health"]?.string ?? "online") == "online"
            }
            guard let primary, let port = primary["port"]?.integer else { continue }
            var host = primary["endpoint"]?.string ?? ""
            if host.isEmpty || host == "?" { host = primary["ip"]?.string ?? "" }
            if host.isEmpty || host == "?" { host = Self.host(of: queried) }
            let endpoint = RESPEndpoint.tcp(host: host, port: Int(port))
            let index =
                topology.primaries.firstIndex(of: endpoint)
                ?? {
                    topology.primaries.append(endpoint)
                    return topology.primaries.count - 1
                }()
            let bounds = ranges.compactMap(\.integer)
            for pair in stride(from: 0, to: bounds.count - 1, by: 2) {
                let (start, end) = (bounds[pair], bounds[pair + 1])
                guard start >= 0, end < HashSlot.count, start <= end else { continue }
                for slot in Int(start)...Int(end) { topology.slots[slot] = Int16(index) }
            }
        }
        return topology
    }

    /// `CLUSTER SLOTS`: `[start, end, [host, port, id, …], replicas…]` per range.
    static func parseSlots(_ reply: RESPValue, queried: RESPEndpoint) throws(RESPError) -> Topology {
        guard let ranges = reply.elements else {
            throw .unexpectedReply(command: "CLUSTER SLOTS", expected: "an array of slot ranges", found: reply.summary)
        }
        var topology = Topology()
        for range in ranges {
            guard let parts = range.elements, parts.count >= 3, let start = parts[0].integer,
                let end = parts[1].integer,
                let node = parts[2].elements, node.count >= 2, let port = node[1].integer,
                start >= 0, end < HashSlot.count, start <= end
            else {
                throw .unexpectedReply(
                    command: "CLUSTER SLOTS", expected: "[start, end, [host, port, …], …]", found: range.summary)
            }
            var host = node[0].string ?? ""
            if host.isEmpty || host == "?" { host = Self.host(of: queried) }
            let endpoint = RESPEndpoint.tcp(host: host, port: Int(port))
            let index =
                topology.primaries.firstIndex(of: endpoint)
                ?? {
                    topology.primaries.append(endpoint)
                    return topology.primaries.count - 1
                }()
            for slot in Int(start)...Int(end) { topology.slots[slot] = Int16(index) }
        }
        return topology
    }
}

/// Thread-safe counters behind `RESPClusterClient.statistics`.
private final class Counters: Sendable {
    private let values = Mutex(RESPClusterClient.Statistics(moved: 0, ask: 0, retries: 0, refreshes: 0))
    func add(moved: Int = 0, ask: Int = 0, retries: Int = 0, refreshes: Int = 0) {
        self.values.withLock {
            $0.moved += moved
            $0.ask += ask
            $0.retries += retries
            $0.refreshes += refreshes
        }
    }
    func snapshot() -> RESPClusterClient.Statistics { self.values.withLock { $0 } }
}
