internal import Node
internal import FlightRPC
internal import ArgumentParser
internal import RESP

/// `valkeyflight bench …`: load generators.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: the RESP client against Valkey, and the whole pipeline.",
        subcommands: [BenchValkeyCommand.self, BenchPipelineCommand.self]
    )
}

/// `valkeyflight bench valkey`: drives our RESP client like redis-benchmark and prints `N ops/s`.
struct BenchValkeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "valkey",
        abstract: "Measure the RESP client against Valkey, redis-benchmark style (ops/s, p50/p99 latency).",
        discussion: "scripts/bench-valkey runs this load beside redis-benchmark against the same server."
    )

    @Option(
        help: "The server, valkey[s]://[user:pass@]host:port[/db] or unix:///path. (default: valkey://127.0.0.1:6379)")
    var valkey: String?

    @Option(help: "PEM trust roots for valkeys:// URLs (default: the system store).")
    var tlsCa: String?

    @Option(help: "Connections, one client each (redis-benchmark -c).")
    var clients = 50

    @Option(help: "Commands in flight per connection (redis-benchmark -P).")
    var pipeline = 1

    @Option(help: "Total commands (redis-benchmark -n).")
    var requests = 100_000

    @Option(help: "set, get or evalsha.")
    var command = "set"

    func run() async throws {
        guard self.clients > 0, self.pipeline > 0, self.requests > 0 else {
            throw NodeError.invalidArgument("--clients, --pipeline and --requests must be positive")
        }
        guard let command = RESPBenchmark.Command(rawValue: self.command) else {
            throw NodeError.invalidArgument("--command must be set, get or evalsha, got '\(self.command)'")
        }
        let url = try Environment.resolve(self.valkey, "VALKEY", default: "valkey://127.0.0.1:6379")
        let configuration: RESPConfiguration
        do {
            configuration = try RESPConfiguration.valkey(url: url, caFile: self.tlsCa)
        } catch {
            throw NodeError.invalidArgument("--valkey '\(url)': \(error)")
        }
        let benchmark = RESPBenchmark(configuration: configuration, clients: self.clients, pipeline: self.pipeline,
                                      requests: self.requests, command: command)
        let report: RESPBenchmark.Report
        do {
            report = try await benchmark.run()
        } catch {
            throw NodeError.invalidArgument("bench valkey against \(url): \(error)")
        }
        print(report.description)
        print("\(Int(report.operationsPerSecond)) ops/s")
        if report.errors > 0 { throw NodeError.invalidArgument("\(report.errors) commands failed") }
    }
}

/// `valkeyflight bench pipeline`: batches/s through the whole pipeline (or the coordinator alone).
struct BenchPipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Measure batches/s through the pipeline: submit over Flight, claim, process, store the result, complete.",
        discussion: """
            Without --valkey it starts its own private valkey-server. Prints 'N batches/s' first, then rows/s and \
            the p50/p99 latency from an acknowledged submit to the start and the end of processing. \
            scripts/bench-pipeline runs it beside RQ, arq and BullMQ on the same valkey-server.
            """
    )

    @Option(help: "Batches to push through.")
    var batches = 10_000

    @Option(help: "Rows per batch.")
    var rows = 1

    @Option(help: "Worker slots (--concurrency of the node's pool).")
    var workers = 8

    @Option(help: "Concurrent submits.")
    var submitters = 32

    @Flag(name: .customLong("coordinator-only"), help: "Only the coordinator: register + claim + complete per batch, no data, no Flight.")
    var coordinatorOnlyFlag = false
    /// The flag, or `VALKEYFLIGHT_COORDINATOR_ONLY` set to 1/true/yes.
    var coordinatorOnly: Bool { self.coordinatorOnlyFlag || Environment.flag("COORDINATOR_ONLY") }

    @Option(help: "With --coordinator-only: batches one claim call takes at most (1…1000).")
    var claim = 1

    @Option(help: "With --coordinator-only: spread the benchmark's queue over K sub-queues, each its own slot (1…\(Coordinator.maxShards)). (default: 1)")
    var queueShards = 1

    @Option(help: "Valkey URL (default: a private valkey-server).")
    var valkey: String?

    @Option(help: "Replicas every state change must reach first (WAIT, at most 1 s), as --valkey-replicas-ack of the modes. (default: end to end 1 when Valkey has replicas, else 0; --coordinator-only 0)")
    var valkeyReplicasAck: Int?

    @Option(help: "valkey-server binary for the private server.")
    var valkeyServer: String?

    func run() async throws {
        guard self.batches > 0, self.rows > 0, self.workers > 0, self.submitters > 0 else {
            throw NodeError.invalidArgument("--batches, --rows, --workers and --submitters must be positive")
        }
        guard (1...Coordinator.maxShards).contains(self.queueShards) else {
            throw NodeError.invalidArgument("--queue-shards must be 1 to \(Coordinator.maxShards), got \(self.queueShards)")
        }
        guard self.queueShards == 1 || self.coordinatorOnly else {
            throw NodeError.invalidArgument("--queue-shards needs --coordinator-only")
        }
        var benchmark = PipelineBenchmark()
        benchmark.batches = self.batches
        benchmark.rows = self.rows
        benchmark.workers = self.workers
        benchmark.submitters = self.submitters
        benchmark.coordinatorOnly = self.coordinatorOnly
        benchmark.claimLimit = self.claim
        benchmark.queueShards = self.queueShards
        benchmark.valkeyURL = try Environment.resolve(self.valkey, "VALKEY")
        benchmark.valkeyServerBinary = try Environment.resolve(self.valkeyServer, "VALKEY_SERVER")
        benchmark.replicasAck = try Environment.resolve(self.valkeyReplicasAck, "VALKEY_REPLICAS_ACK")
        if let ack = benchmark.replicasAck, !(0...16).contains(ack) {
            throw NodeError.invalidArgument("--valkey-replicas-ack must be 0 to 16, got \(ack)")
        }
        print(try await benchmark.run().description)
    }
}
