public import RESP

/// One handle on Valkey: a standalone server or a whole cluster.
///
/// `connect` asks the first reachable seed `INFO cluster`; `cluster_enabled:1` makes this a
/// `RESPClusterClient` (every given URL a seed), otherwise a `RESPClient` on the first URL. Ordinary commands
/// share one automatically pipelined connection per server; blocking commands (`BLPOP`) run on dedicated
/// connections through `withDedicatedConnection(forKey:_:)`.
public final class ValkeyConnection: Sendable {
    private enum Backend: Sendable {
        case standalone(RESPClient)
        case cluster(RESPClusterClient)
    }

    private let backend: Backend
    /// The URLs this handle was made from, credentials removed (for messages).
    public let displayURL: String
    /// Commands sent through this handle and those that failed (`valkeyflight_valkey_*_total`).
    package let counters = ValkeyCommandCounters()

    private init(backend: Backend, displayURL: String) {
        self.backend = backend
        self.displayURL = displayURL
    }

    /// Connects to `url`: `valkey://[user:pass@]host:port[/db]`, `valkeys://` (TLS, verified against
    /// `tlsCAFile` or the system store), `unix:///path`; several comma-separated seed URLs for a cluster.
    /// The first reachable URL is probed with `INFO cluster`.
    /// - Throws: `NodeError.invalidArgument` for a bad URL; `NodeError.unavailable` naming the URLs and the
    ///   last error when none answers.
    public static func connect(_ url: String, clientName: String? = nil, tlsCAFile: String? = nil) async throws
        -> ValkeyConnection
    {
        let urls = url.split(separator: ",").map { $0.trimmingSpaces }.filter { !$0.isEmpty }
        guard !urls.isEmpty else { throw NodeError.invalidArgument("--valkey: no URL given") }
        var configurations: [RESPConfiguration] = []
        for text in urls {
            do throws(RESPError) {
                var configuration = try RESPConfiguration.valkey(url: text, caFile: tlsCAFile)
                configuration.clientName = clientName
                configurations.append(configuration)
            } catch {
                throw NodeError.invalidArgument(error.description)
            }
        }
        let display = urls.map(Self.redacted).joined(separator: ",")
        var lastError = "no URL tried"
        for configuration in configurations {
            // A quick probe: the long-lived clients below keep the configured reconnection policy.
            var probeConfiguration = configuration
            probeConfiguration.reconnect = .init(
                maxAttempts: 2, baseDelay: .milliseconds(50), maxDelay: .milliseconds(200))
            probeConfiguration.commandTimeout = .seconds(10)
            let probe = RESPClient(configuration: probeConfiguration)
            defer { probe.close() }
            let info: String
            do throws(RESPError) {
                info = try await probe.send("INFO", "cluster").string ?? ""
            } catch {
                lastError = error.description
                continue
            }
            if info.contains("cluster_enabled:1") {
                let seeds = configurations.map(\.endpoint)
                var node = configuration
                node.database = 0
                let cluster = RESPClusterClient(seeds: seeds, configuration: node)
                do throws(RESPError) {
                    try await cluster.refreshTopology()
                } catch {
                    cluster.close()
                    throw NodeError.unavailable("Valkey Cluster at \(display) is not usable: \(error.description)")
                }
                return ValkeyConnection(backend: .cluster(cluster), displayURL: display)
            }
            return ValkeyConnection(backend: .standalone(RESPClient(configuration: configuration)), displayURL: display)
        }
        throw NodeError.unavailable("cannot reach Valkey at \(display): \(lastError)")
    }

    /// True when connected to a Valkey Cluster.
    public var isCluster: Bool {
        if case .cluster = self.backend { return true }
        return false
    }

    /// The executor of the event-loop thread serving this handle's sockets; tasks that mostly await replies may
    /// prefer it (see `RESPClient.taskExecutor`). They must never block.
    public var taskExecutor: any TaskExecutor {
        switch self.backend {
        case .standalone(let client): return client.taskExecutor
        case .cluster(let cluster): return RESPClient(configuration: cluster.configuration).taskExecutor
        }
    }

    /// Runs `script` (EVALSHA, loaded on NOSCRIPT) with `keys`, which must share one hash slot on a cluster.
    /// - Throws: `RESPError` (`.server` for a script error, `.crossSlot`, connection errors).
    public func evalScript(_ script: RESPScript, keys: [String], arguments: [any RESPArgument]) async throws
        -> RESPValue
    {
        try await self.counters.count {
            switch self.backend {
            case .standalone(let client): return try await client.evalScript(script, keys: keys, arguments: arguments)
            case .cluster(let cluster): return try await cluster.evalScript(script, keys: keys, arguments: arguments)
            }
        }
    }

    /// Sends `command`, all of whose keys hash to the slot of `key` (nil: a keyless command, sent to any node).
    /// - Throws: `RESPError`.
    public func send(_ command: RESPCommand, key: String?) async throws -> RESPValue {
        try await self.counters.count {
            switch self.backend {
            case .standalone(let client): return try await client.send(command)
            case .cluster(let cluster):
                return try await cluster.send(command, slot: key.map { HashSlot.slot(for: $0) } ?? 0)
            }
        }
    }

    /// Sends many commands at once (one pipeline per server) and returns one result per command, in order.
    /// - Throws: `RESPError` only when no connection could be obtained.
    public func pipeline(_ commands: [(command: RESPCommand, key: String)]) async throws -> [Result<
        RESPValue, RESPError
    >] {
        guard !commands.isEmpty else { return [] }
        self.counters.commands.add(UInt64(commands.count))
        let results: [Result<RESPValue, RESPError>]
        do {
            switch self.backend {
            case .standalone(let client): results = try await client.pipeline(commands.map(\.command))
            case .cluster(let cluster): results = try await cluster.pipeline(commands)
            }
        } catch {
            self.counters.errors.add(UInt64(commands.count))
            throw error
        }
        var failed: UInt64 = 0
        for result in results { if case .failure = result { failed += 1 } }
        if failed > 0 { self.counters.errors.add(failed) }
        return results
    }

    /// Runs `body` on a connection of its own to the server holding `key` (blocking commands).
    /// - Throws: whatever `body` throws; connection errors.
    public func withDedicatedConnection<T: Sendable>(
        forKey key: String, _ body: (RESPDedicatedConnection) async throws(RESPError) -> T
    ) async throws(RESPError) -> T {
        switch self.backend {
        case .standalone(let client): return try await client.withDedicatedConnection(body)
        case .cluster(let cluster): return try await cluster.withDedicatedConnection(forKey: key, body)
        }
    }

    /// Sends PING.
    /// - Throws: `NodeError.unavailable` when Valkey does not answer.
    public func ping() async throws {
        do {
            _ = try await self.send(RESPCommand("PING"), key: nil)
        } catch {
            throw NodeError(valkey: error, url: self.displayURL)
        }
    }

    /// Replicas of the least-replicated primary: `connected_slaves` of a standalone server, or the minimum
    /// over the cluster's shards that serve slots of replicas not marked failed (`CLUSTER SHARDS`); for the
    /// default of `--valkey-replicas-ack`.
    /// - Throws: `NodeError.unavailable` when Valkey fails or answers unexpectedly.
    public func replicaCount() async throws -> Int {
        do {
            switch self.backend {
            case .standalone:
                let info = try await self.send(RESPCommand("INFO", "replication"), key: nil).string ?? ""
                for line in info.split(whereSeparator: \.isNewline)
                where line.hasPrefix("connected_slaves:") {
                    return Int(line.dropFirst("connected_slaves:".count)) ?? 0
                }
                return 0
            case .cluster:
                let reply = try await self.send(RESPCommand("CLUSTER", "SHARDS"), key: nil)
                var fewest: Int?
                for shard in reply.elements ?? [] {
                    guard let slots = shard["slots"]?.elements, !slots.isEmpty else { continue }
                    let online = (shard["nodes"]?.elements ?? []).filter { node in
                        // Valkey reports a replica that has seen no writes yet (offset 0) as "loading".
                        node["role"]?.string == "replica" && (node["health"]?.string ?? "online") != "failed"
                    }.count
                    fewest = min(fewest ?? online, online)
                }
                return fewest ?? 0
            }
        } catch {
            throw NodeError(valkey: error, url: self.displayURL)
        }
    }

    /// Closes every connection; later calls fail with `RESPError.clientClosed`.
    public func close() {
        switch self.backend {
        case .standalone(let client): client.close()
        case .cluster(let cluster): cluster.close()
        }
    }

    /// `url` without the password.
    static func redacted(_ url: String) -> String {
        guard let scheme = url.firstRange(of: "://"), let at = url.lastIndex(of: "@"), at > scheme.upperBound else {
            return url
        }
        let credentials = url[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }
}

extension NodeError {
    /// The node error for a failed Valkey call: server out of memory → resourceExhausted, everything else
    /// (connection lost, timeouts, cluster down, unexpected replies) → unavailable. A NodeError passes through.
    init(valkey error: any Error, url: String) {
        if let node = error as? NodeError {
            self = node
            return
        }
        guard let resp = error as? RESPError else {
            self = .unavailable("Valkey at \(url): \(error)")
            return
        }
        if resp.serverCode == "OOM" {
            self = .resourceExhausted("Valkey at \(url) is out of memory: \(resp.description)")
        } else {
            self = .unavailable("Valkey at \(url): \(resp.description)")
        }
    }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
