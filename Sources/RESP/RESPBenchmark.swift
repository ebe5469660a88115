import Synchronization

/// A load generator like `redis-benchmark`: `clients` connections, each sending `pipeline` commands at a
/// time until `requests` commands completed in total; reports throughput and latency percentiles.
/// Used by the `resp-bench` executable and meant for `valkeyflight bench valkey`.
public struct RESPBenchmark: Sendable {
    /// The command each request sends.
    public enum Command: String, Sendable, CaseIterable {
        /// `SET key:__rand_int__ xxx` (3-byte value, one key, as redis-benchmark without -r).
        case set
        /// `GET key:__rand_int__`.
        case get
        /// `EVALSHA` of `RESPBenchmark.script` on one key.
        case evalsha
    }

    /// The script the `evalsha` command runs: increment a counter and return it.
    public static let script = RESPScript("return redis.call('INCR', KEYS[1])")
    /// The key every request uses (redis-benchmark's literal default key).
    public static let key = "key:__rand_int__"

    /// Server and connection settings (one connection per client).
    public var configuration: RESPConfiguration
    /// Number of connections, each driven by one task (redis-benchmark `-c`).
    public var clients: Int
    /// Commands each connection keeps in flight (redis-benchmark `-P`).
    public var pipeline: Int
    /// Total commands over all connections (redis-benchmark `-n`).
    public var requests: Int
    /// The command every request sends.
    public var command: Command

    /// A benchmark of `requests` commands over `clients` connections, `pipeline` at a time (each at least 1).
    public init(
        configuration: RESPConfiguration, clients: Int = 50, pipeline: Int = 1, requests: Int = 100_000,
        command: Command = .set
    ) {
        self.configuration = configuration
        self.clients = max(1, clients)
        self.pipeline = max(1, pipeline)
        self.requests = max(1, requests)
        self.command = command
    }

    /// What a run measured.
    public struct Report: Sendable, CustomStringConvertible {
        /// What was measured and how (copied from the benchmark).
        public var command: Command
        /// Connections used.
        public var clients: Int
        /// Commands in flight per connection.
        public var pipeline: Int
        /// Commands completed.
        public var requests: Int
        /// Wall time from the first command to the last reply.
        public var seconds: Double
        /// Completed commands per second of `seconds`.
        public var operationsPerSecond: Double
        /// Latency of each request (for a pipeline: of the batch it was in), milliseconds.
        public var p50: Double
        /// 99th percentile latency, milliseconds.
        public var p99: Double
        /// Commands that failed (error replies or connection errors).
        public var errors: Int

        /// One line in redis-benchmark's `-q` style.
        public var description: String {
            "\(self.command.rawValue.uppercased()): \(format(self.operationsPerSecond, 2)) requests per second, "
                + "p50=\(format(self.p50, 3)) msec, p99=\(format(self.p99, 3)) msec"
                + " (clients=\(self.clients) pipeline=\(self.pipeline) requests=\(self.requests) errors=\(self.errors))"
        }
    }

    /// Runs the benchmark.
    /// - Throws: connection errors of the first connection (`.reconnectFailed`, `.handshakeFailed`, ...).
    public func run() async throws(RESPError) -> Report {
        let clients = (0..<self.clients).map { _ in RESPClient(configuration: self.configuration) }
        defer { for client in clients { client.close() } }
        // Connect everything (and load the script) before the clock starts.
        for client in clients { _ = try await client.send("PING") }
        if self.command == .evalsha { try await clients[0].load(Self.script) }
        let command: RESPCommand
        switch self.command {
        case .set: command = RESPCommand("SET", Self.key, "xxx")
        case .get: command = RESPCommand("GET", Self.key)
        case .evalsha: command = Self.script.command(keys: [Self.key], arguments: [])
        }
        let budget = RequestBudget(self.requests)
        let pipeline = self.pipeline
        let start = monotonicNanoseconds()
        let (latencies, errors) = await withTaskGroup(of: ([UInt32], Int).self) { group in
            for client in clients {
                // Like redis-benchmark's single event loop: callers run on the loop thread, no thread hops.
                group.addTask(executorPreference: client.taskExecutor) {
                    var latencies: [UInt32] = []
                    var errors = 0
                    let batch = [RESPCommand](repeating: command, count: pipeline)
                    while true {
                        let taken = budget.remaining.subtract(pipeline, ordering: .relaxed).oldValue
                        if taken <= 0 { break }
                        let count = min(pipeline, taken)
                        let sent = monotonicNanoseconds()
                        if count == 1 {
                            do throws(RESPError) { _ = try await client.send(command) } catch { errors += 1 }
                        } else {
                            do throws(RESPError) {
                                let results = try await client.pipeline(
                                    count == pipeline ? batch : Array(batch.prefix(count)))
                                for case .failure in results { errors += 1 }
                            } catch {
                                errors += count
                            }
                        }
                        let micros = UInt32(clamping: (monotonicNanoseconds() &- sent) / 1000)
                        for _ in 0..<count { latencies.append(micros) }
                    }
                    return (latencies, errors)
                }
            }
            var all: [UInt32] = []
            var errors = 0
            for await (part, partErrors) in group {
                all += part
                errors += partErrors
            }
            return (all, errors)
        }
        let seconds = Double(monotonicNanoseconds() &- start) / 1e9
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
        }
        return Report(
            command: self.command, clients: self.clients, pipeline: self.pipeline, requests: sorted.count,
            seconds: seconds,
            operationsPerSecond: Double(sorted.count) / seconds, p50: percentile(0.5), p99: percentile(0.99),
            errors: errors)
    }
}

/// Requests not yet started, shared by the benchmark's client tasks.
private final class RequestBudget: Sendable {
    let remaining: Atomic<Int>
    init(_ requests: Int) { self.remaining = Atomic(requests) }
}

/// `value` with `digits` decimals (no Foundation formatting in this module).
private func format(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (value * scale).rounded()
    let whole = Int(scaled / scale)
    let fraction = Int(scaled - Double(whole) * scale)
    let text = String(fraction)
    return "\(whole)." + String(repeating: "0", count: max(0, digits - text.count)) + text
}
