internal import Node
internal import FlightRPC
internal import ArgumentParser
internal import GRPCWire

/// Where a serving mode listens and what it advertises.
struct ListenOptions: ParsableArguments {
    @Option(help: "Address to listen on, HOST:PORT; port 0 picks a free port. (default: 127.0.0.1:8815)")
    var listen: HostPort?

    @Option(help: "Location advertised in FlightInfo and recorded for each batch — what other hosts' workers dial — grpc://HOST:PORT. (default: the listen address with the bound port; on a wildcard listen address, this machine's first non-loopback address)")
    var advertise: String?

    func apply(to configuration: inout NodeConfiguration) throws {
        configuration.listen = try Environment.resolve(self.listen, "LISTEN", default: HostPort(host: "127.0.0.1", port: 8815))
        configuration.advertise = try Environment.resolve(self.advertise, "ADVERTISE")
        if let advertise = configuration.advertise {
            let location = try FlightLocation(parsing: advertise)
            // Other hosts dial exactly this: a wildcard or port 0 is never a place to connect to.
            guard !["0.0.0.0", "::", ""].contains(location.host), location.port != 0 else {
                throw NodeError.invalidArgument("--advertise \(advertise): other hosts connect to this address, so it needs a real host and port (e.g. grpc://10.0.0.5:8815), not a wildcard or port 0")
            }
        }
    }
}

/// Options every long-running mode shares (the ValkeyFlight contract (CONTRACT.md) §1).
struct NodeOptions: ParsableArguments {
    @Option(help: "Valkey: valkey://[user:pass@]host:port[/db], valkeys://… (TLS), unix:///path; a cluster node uses the whole cluster; several seeds comma-separated.")
    var valkey: String?

    @Option(help: "PEM CA file for valkeys:// (default: the system trust store).")
    var valkeyTlsCa: String?

    @Option(help: "Replicas every acknowledged state change must reach first (WAIT, at most 1 s). (default: 1 when Valkey has replicas, else 0)")
    var valkeyReplicasAck: Int?

    @Option(help: "How long in-flight work may take to finish at shutdown; DURATION is seconds or 100ms, 1.5s, 5m, 1h, 7d. (default: 10s)")
    var grace: DurationOption?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. (default: info)")
    var logLevel: String?

    @Option(help: "Log format: text or json. (default: text)")
    var logFormat: String?

    func apply(to configuration: inout NodeConfiguration) throws {
        let level = try Environment.resolve(self.logLevel, "LOG_LEVEL", default: "info")
        let format = try Environment.resolve(self.logFormat, "LOG_FORMAT", default: "text")
        configuration.log = try NodeLogger(level: level, format: format)
        configuration.valkeyURL = try Environment.resolve(self.valkey, "VALKEY")
        configuration.valkeyTLSCA = try Environment.resolve(self.valkeyTlsCa, "VALKEY_TLS_CA")
        configuration.replicasAck = try Environment.resolve(self.valkeyReplicasAck, "VALKEY_REPLICAS_ACK")
        if let ack = configuration.replicasAck, !(0...16).contains(ack) {
            throw NodeError.invalidArgument("--valkey-replicas-ack must be 0 to 16, got \(ack)")
        }
        configuration.grace = try Environment.resolve(self.grace, "GRACE", default: DurationOption(argument: "10s")!).duration
    }
}

/// Options of a Flight server.
struct FlightServerOptions: ParsableArguments {
    @Option(help: "How long a stored batch lives (DURATION). (default: 1h)")
    var ttl: DurationOption?

    @Option(help: "Most bytes of batches held; DoPut beyond it fails RESOURCE_EXHAUSTED. BYTES: 500MB, 2GiB, … (default: no limit)")
    var maxMemory: ByteSizeOption?

    @Option(help: "TLS certificate chain (PEM); with --tls-key the server speaks grpc+tls.")
    var tlsCert: String?

    @Option(help: "TLS private key (PEM).")
    var tlsKey: String?

    @Option(help: "Turn on Handshake authentication with USER:PASS; other calls then need the bearer token.")
    var authBasic: String?

    func apply(to configuration: inout NodeConfiguration) throws {
        let ttl = try Environment.resolve(self.ttl, "TTL", default: DurationOption(argument: "1h")!)
        guard ttl.duration > .zero else { throw NodeError.invalidArgument("--ttl must be positive") }
        configuration.ttl = ttl.duration
        configuration.maxMemory = try Environment.resolve(self.maxMemory, "MAX_MEMORY")?.bytes ?? .max
        let cert = try Environment.resolve(self.tlsCert, "TLS_CERT")
        let key = try Environment.resolve(self.tlsKey, "TLS_KEY")
        switch (cert, key) {
        case (nil, nil): configuration.tls = nil
        case let (cert?, key?): configuration.tls = .server(certificateChain: cert, privateKey: key)
        default: throw NodeError.invalidArgument("--tls-cert and --tls-key go together")
        }
        configuration.auth = try Environment.resolve(self.authBasic, "AUTH_BASIC").map { try FlightBasicAuth(parsing: $0) }
    }
}

/// Options of the coordinator.
struct CoordinatorOptions: ParsableArguments {
    @Option(help: "How long finished batches keep their status (DURATION). (default: 7d)")
    var retention: DurationOption?

    @Option(help: "At start, set queue Q's shard count in Valkey to K (1…\(Coordinator.maxShards)): new batches spread over sub-queues Q#0…Q#K-1, each its own slot; Q=K[,Q=K…]. Same as 'valkeyflight queue configure Q --shards K'.")
    var queueShards: String?

    func apply(to configuration: inout NodeConfiguration) throws {
        let retention = try Environment.resolve(self.retention, "RETENTION", default: DurationOption(argument: "7d")!)
        guard retention.duration > .zero else { throw NodeError.invalidArgument("--retention must be positive") }
        configuration.retention = retention.duration
        if let text = try Environment.resolve(self.queueShards, "QUEUE_SHARDS") {
            configuration.queueShards = try Self.parseQueueShards(text)
        }
    }

    /// `Q=K[,Q=K…]` → [Q: K]; each Q a valid queue name, each K 1…1024, no queue twice.
    static func parseQueueShards(_ text: String) throws -> [String: Int] {
        var shards: [String: Int] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", omittingEmptySubsequences: false).map { String($0).trimmingSpaces }
            guard parts.count == 2 else {
                throw NodeError.invalidArgument("--queue-shards takes QUEUE=K[,QUEUE=K…], got '\(BatchKey.printable(String(item)))'")
            }
            try BatchKey.check(parts[0], "queue")
            guard let count = QueueLayout.shardCount(parts[1]) else {
                throw NodeError.invalidArgument("--queue-shards \(parts[0])=\(BatchKey.printable(parts[1])): the shard count must be 1 to \(Coordinator.maxShards)")
            }
            guard shards.updateValue(count, forKey: parts[0]) == nil else {
                throw NodeError.invalidArgument("--queue-shards names queue '\(parts[0])' twice")
            }
        }
        guard !shards.isEmpty else { throw NodeError.invalidArgument("--queue-shards takes QUEUE=K[,QUEUE=K…]") }
        return shards
    }
}

/// Options of the worker pool.
struct WorkerOptions: ParsableArguments {
    @Option(help: "Queues to claim from, NAME[,NAME…]. (default: default)")
    var queue: String?

    @Option(help: "Batches processed at once. (default: 1)")
    var concurrency: Int?

    @Option(help: "Built-in processor: passthrough. (default: passthrough, unless --exec)")
    var processor: String?

    @Option(help: "Process each batch with 'COMMAND ARGS' (run by /bin/sh): Arrow IPC stream on stdin, result stream on stdout.")
    var exec: String?

    @Option(help: "Like --exec, but one long-lived child per slot answers batch after batch over the framed protocol of the README (examples/python/valkeyflight_processor.py speaks it).")
    var execPersistent: String?

    @Option(help: "Lease per attempt (DURATION), extended every third of it. (default: 30s)")
    var lease: DurationOption?

    @Option(help: "Attempts before a batch fails. (default: 3)")
    var maxAttempts: Int?

    @Option(help: "First retry delay (DURATION); doubles per attempt, with jitter. (default: 1s)")
    var retryBase: DurationOption?

    @Option(help: "Longest retry delay (DURATION). (default: 60s)")
    var retryMax: DurationOption?

    @Option(help: "Longest one attempt may take (DURATION). (default: no limit)")
    var timeout: DurationOption?

    @Option(help: "PEM CA file for reaching grpc+tls nodes.")
    var tlsCa: String?

    @Option(help: "Body compression of results that passthrough (or a Swift processor) produces: none, lz4 or zstd; --exec results are stored as the child wrote them. (default: none)")
    var resultCompression: BodyCompressionChoice?

    func apply(to configuration: inout NodeConfiguration) throws {
        var worker = configuration.worker
        let queues = try Environment.resolve(self.queue, "QUEUE", default: "default")
            .split(separator: ",").map { String($0).trimmingSpaces }
        guard !queues.isEmpty else { throw NodeError.invalidArgument("--queue needs at least one queue name") }
        for queue in queues { try BatchKey.check(queue, "queue") }
        worker.queues = queues
        worker.concurrency = try Environment.resolve(self.concurrency, "CONCURRENCY", default: 1)
        guard (1...4096).contains(worker.concurrency) else {
            throw NodeError.invalidArgument("--concurrency must be 1 to 4096, got \(worker.concurrency)")
        }
        worker.lease = try Environment.resolve(self.lease, "LEASE", default: DurationOption(argument: "30s")!).duration
        guard worker.lease >= .milliseconds(300) else { throw NodeError.invalidArgument("--lease must be at least 300ms") }
        worker.policy.maxAttempts = try Environment.resolve(self.maxAttempts, "MAX_ATTEMPTS", default: 3)
        guard (1...1000).contains(worker.policy.maxAttempts) else {
            throw NodeError.invalidArgument("--max-attempts must be 1 to 1000, got \(worker.policy.maxAttempts)")
        }
        worker.policy.base = try Environment.resolve(self.retryBase, "RETRY_BASE", default: DurationOption(argument: "1s")!).duration
        worker.policy.max = try Environment.resolve(self.retryMax, "RETRY_MAX", default: DurationOption(argument: "60s")!).duration
        guard worker.policy.base <= worker.policy.max else {
            throw NodeError.invalidArgument("--retry-base must not exceed --retry-max")
        }
        worker.timeout = try Environment.resolve(self.timeout, "TIMEOUT")?.duration
        if let timeout = worker.timeout, timeout <= .zero { throw NodeError.invalidArgument("--timeout must be positive") }
        configuration.worker = worker

        let exec = try Environment.resolve(self.exec, "EXEC")
        let persistent = try Environment.resolve(self.execPersistent, "EXEC_PERSISTENT")
        let processor = try Environment.resolve(self.processor, "PROCESSOR")
        switch (processor, exec, persistent) {
        case (nil, nil, nil), ("passthrough", nil, nil):
            configuration.processor = .passthrough
        case let (nil, command?, nil), let (nil, nil, command?):
            guard !command.trimmingSpaces.isEmpty else { throw NodeError.invalidArgument("--exec needs a command") }
            configuration.processor = .exec(command: command, persistent: persistent != nil)
        case let (name?, nil, nil):
            throw NodeError.invalidArgument("unknown --processor '\(name)'; built in: passthrough (or use --exec 'COMMAND')")
        default:
            throw NodeError.invalidArgument("give one of --processor, --exec and --exec-persistent")
        }
        configuration.trustRoots = try Environment.resolve(self.tlsCa, "TLS_CA")
        configuration.worker.resultCompression = try Environment.resolve(self.resultCompression, "RESULT_COMPRESSION")?.codec
    }
}

extension String {
    var trimmingSpaces: String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// `valkeyflight flight`: the Flight server; with --valkey it registers every stored batch with the coordinator.
struct FlightCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flight",
        abstract: "Run the Flight server: an in-memory store of Arrow batches; with --valkey, every stored batch is registered for processing.",
        discussion: "Prints 'listening on grpc://HOST:PORT' once it serves. Stops cleanly on SIGINT or SIGTERM.\n\n" + OptionHelp.values
    )

    @OptionGroup var address: ListenOptions
    @OptionGroup var node: NodeOptions
    @OptionGroup var http: HTTPOptions
    @OptionGroup var server: FlightServerOptions
    @OptionGroup var durability: DurabilityOptions

    @Option(help: "max_attempts recorded for registered batches until a worker claims them. (default: 3)")
    var maxAttempts: Int?

    func run() async throws {
        var configuration = NodeConfiguration(mode: .flight)
        try self.address.apply(to: &configuration)
        try self.node.apply(to: &configuration)
        try self.http.apply(to: &configuration)
        try self.server.apply(to: &configuration)
        try self.durability.apply(to: &configuration)
        configuration.worker.policy.maxAttempts = try Environment.resolve(self.maxAttempts, "MAX_ATTEMPTS", default: 3)
        try await ValkeyFlightNode.run(configuration)
    }
}

/// `valkeyflight all`: Flight server, coordinator and worker pool in one process.
struct AllCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Run the whole pipeline in one process: Flight server + coordinator + worker pool.",
        discussion: """
            Without --valkey it starts a private valkey-server (from --valkey-server, else valkey-server or redis-server \
            on PATH, else the one scripts/bootstrap installed) on a Unix socket, in memory, and stops it on exit. \
            Prints 'listening on grpc://HOST:PORT' once it serves. Stops cleanly on SIGINT or SIGTERM.

            """ + OptionHelp.values
    )

    @OptionGroup var address: ListenOptions
    @OptionGroup var node: NodeOptions
    @OptionGroup var http: HTTPOptions
    @OptionGroup var server: FlightServerOptions
    @OptionGroup var durability: DurabilityOptions
    @OptionGroup var coordinator: CoordinatorOptions
    @OptionGroup var worker: WorkerOptions

    @Option(help: "valkey-server binary for the embedded default (without --valkey).")
    var valkeyServer: String?

    func run() async throws {
        var configuration = NodeConfiguration(mode: .all)
        try self.address.apply(to: &configuration)
        try self.node.apply(to: &configuration)
        try self.http.apply(to: &configuration)
        try self.server.apply(to: &configuration)
        try self.durability.apply(to: &configuration)
        try self.coordinator.apply(to: &configuration)
        try self.worker.apply(to: &configuration)
        configuration.valkeyServerBinary = try Environment.resolve(self.valkeyServer, "VALKEY_SERVER")
        try await ValkeyFlightNode.run(configuration)
    }
}

/// `valkeyflight coordinator`: housekeeping and the management actions over Flight, no data.
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run housekeeping (expired leases, due retries, retention) and serve the management actions over Flight.",
        discussion: "Needs --valkey. Prints 'listening on grpc://HOST:PORT' once it serves.\n\n" + OptionHelp.values
    )

    @OptionGroup var address: ListenOptions
    @OptionGroup var node: NodeOptions
    @OptionGroup var http: HTTPOptions
    @OptionGroup var coordinator: CoordinatorOptions

    @Option(help: "Turn on Handshake authentication with USER:PASS.")
    var authBasic: String?

    func run() async throws {
        var configuration = NodeConfiguration(mode: .coordinator)
        try self.address.apply(to: &configuration)
        try self.node.apply(to: &configuration)
        try self.http.apply(to: &configuration)
        try self.coordinator.apply(to: &configuration)
        configuration.auth = try Environment.resolve(self.authBasic, "AUTH_BASIC").map { try FlightBasicAuth(parsing: $0) }
        try await ValkeyFlightNode.run(configuration)
    }
}

/// `valkeyflight worker`: the worker pool only.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker pool: claim batches from Valkey, fetch them over Flight, process, store the result.",
        discussion: "Needs --valkey. Opens no listening socket unless --listen or --http-listen asks for HTTP. Stops claiming on SIGINT/SIGTERM, finishes in-flight batches within --grace, releases the rest.\n\n" + OptionHelp.values
    )

    @OptionGroup var node: NodeOptions
    @OptionGroup var http: WorkerHTTPOptions
    @OptionGroup var worker: WorkerOptions

    func run() async throws {
        var configuration = NodeConfiguration(mode: .worker)
        try self.node.apply(to: &configuration)
        try self.http.apply(to: &configuration)
        try self.worker.apply(to: &configuration)
        try await ValkeyFlightNode.run(configuration)
    }
}
