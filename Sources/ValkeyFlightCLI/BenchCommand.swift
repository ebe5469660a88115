internal import Node
internal import FlightRPC
internal import ArgumentParser
internal import RESP

/// `valkeyflight bench …`: load generators.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: the RESP client against a Valkey server.",
        subcommands: [BenchValkeyCommand.self]
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
