internal import Glibc
import Synchronization

/// What a scrape reads besides the recorded metrics: the store, Valkey's per-state counts, the Valkey handle.
struct MetricsSources: Sendable {
    let metrics: NodeMetrics
    let store: BatchStore?
    let coordinator: Coordinator?
    let valkey: ValkeyConnection?
    /// `valkeyflight_batches` as last read from Valkey (at most one read per second, however often scraped).
    let batchCounts: CachedBatchCounts?
}

/// `valkeyflight_batches{queue,status}`, read from the coordinator's per-state indexes at most once a second.
final class CachedBatchCounts: Sendable {
    private struct Entry {
        var at: ContinuousClock.Instant
        var counts: [String: [BatchState: Int]]
    }

    let coordinator: Coordinator
    let maxAge: Duration
    private let cache = Mutex<Entry?>(nil)

    init(coordinator: Coordinator, maxAge: Duration = .seconds(1)) {
        self.coordinator = coordinator
        self.maxAge = maxAge
    }

    /// The counts, fresh or at most `maxAge` old; nil when Valkey cannot be read (and nothing recent is cached).
    func counts() async -> [String: [BatchState: Int]]? {
        let now = ContinuousClock.now
        if let entry = self.cache.withLock({ $0 }), now - entry.at < self.maxAge { return entry.counts }
        guard let counts = try? await self.coordinator.stats() else { return nil }
        self.cache.withLock { $0 = Entry(at: now, counts: counts) }
        return counts
    }
}

/// The Prometheus text exposition format 0.0.4 of a node's metrics.
enum MetricsExposition {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    static func render(_ sources: MetricsSources) async -> String {
        var out = ""
        out.reserveCapacity(16 << 10)
        let metrics = sources.metrics

        header(&out, "valkeyflight_batches", "gauge", "Batches per queue and status, as Valkey holds them.")
        if let counts = await sources.batchCounts?.counts() {
            for (queue, states) in counts.sorted(by: { $0.key < $1.key }) {
                for state in BatchState.allCases {
                    out += "valkeyflight_batches{queue=\(label(queue)),status=\(label(state.rawValue))} \(states[state] ?? 0)\n"
                }
            }
        }

        let queues = metrics.queueMetrics
        header(&out, "valkeyflight_batch_wait_seconds", "histogram", "From submission (or retry) to a claim, by queue.")
        for (queue, q) in queues { histogram(&out, "valkeyflight_batch_wait_seconds", "queue=\(label(queue))", q.wait) }
        header(&out, "valkeyflight_batch_processing_seconds", "histogram", "From a claim to the attempt's end, by queue.")
        for (queue, q) in queues {
            histogram(&out, "valkeyflight_batch_processing_seconds", "queue=\(label(queue))", q.processing)
        }
        header(&out, "valkeyflight_batch_attempts_total", "counter", "Processing attempts by queue and outcome.")
        for (queue, q) in queues {
            for outcome in QueueMetrics.outcomes {
                out += "valkeyflight_batch_attempts_total{queue=\(label(queue)),outcome=\(label(outcome))} \(q.attempts(outcome))\n"
            }
        }

        header(&out, "valkeyflight_flight_rpcs_total", "counter", "Flight RPCs served, by method and gRPC status code.")
        var seen: [(String, RPCMethodMetrics)] = []
        for method in NodeMetrics.methods {
            guard let rpc = metrics.rpc(method) else { continue }
            var any = false
            for code in 0..<17 {
                let calls = rpc.calls(code: code)
                guard calls > 0 else { continue }
                any = true
                out += "valkeyflight_flight_rpcs_total{method=\(label(method)),code=\(label(codeName(code)))} \(calls)\n"
            }
            if any { seen.append((method, rpc)) }
        }
        header(&out, "valkeyflight_flight_rpc_seconds", "histogram", "Flight RPC durations, by method.")
        for (method, rpc) in seen { histogram(&out, "valkeyflight_flight_rpc_seconds", "method=\(label(method))", rpc.seconds) }

        let usage = sources.store?.usage
        single(&out, "valkeyflight_store_bytes", "gauge", "Bytes of batches held in this node's store.",
               usage?.storedBytes ?? 0)
        single(&out, "valkeyflight_store_batches", "gauge", "Batches held in this node's store.",
               usage?.batches ?? 0)
        single(&out, "valkeyflight_worker_busy", "gauge", "Worker slots processing a batch now.",
               metrics.workersBusy)
        single(&out, "valkeyflight_valkey_commands_total", "counter", "Commands sent to Valkey.",
               sources.valkey?.counters.commands.current ?? 0)
        single(&out, "valkeyflight_valkey_errors_total", "counter", "Valkey commands that failed (connection or server errors).",
               sources.valkey?.counters.errors.current ?? 0)

        let process = ProcessStatistics.read()
        single(&out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
               process.residentBytes)
        single(&out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
               number(process.cpuSeconds))
        single(&out, "process_open_fds", "gauge", "Number of open file descriptors.",
               process.openFDs)
        single(&out, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.",
               number(process.startTimeSeconds))
        return out
    }

    private static func header(_ out: inout String, _ name: String, _ type: String, _ help: String) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    /// A family with one unlabelled sample: its header, then `name value`.
    private static func single(
        _ out: inout String, _ name: String, _ type: String, _ help: String, _ value: some CustomStringConvertible
    ) {
        Self.header(&out, name, type, help)
        out += "\(name) \(value)\n"
    }

    private static func histogram(_ out: inout String, _ name: String, _ labels: String, _ histogram: MetricHistogram) {
        let (cumulative, sum) = histogram.snapshot
        for (i, bound) in MetricHistogram.bounds.enumerated() {
            out += "\(name)_bucket{\(labels),le=\"\(number(bound))\"} \(cumulative[i])\n"
        }
        let total = cumulative.last ?? 0
        out += "\(name)_bucket{\(labels),le=\"+Inf\"} \(total)\n"
        out += "\(name)_sum{\(labels)} \(number(sum))\n"
        out += "\(name)_count{\(labels)} \(total)\n"
    }

    /// A quoted label value with `\`, `"` and newlines escaped.
    static func label(_ value: String) -> String {
        var escaped = "\""
        for c in value.unicodeScalars {
            switch c {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(c)
            }
        }
        return escaped + "\""
    }

    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    static func codeName(_ code: Int) -> String {
        ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
         "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
         "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"][code]
    }
}

/// The standard `process_*` metrics from /proc (Linux).
struct ProcessStatistics {
    var residentBytes = 0
    var cpuSeconds = 0.0
    var openFDs = 0
    var startTimeSeconds = 0.0

    static func read() -> ProcessStatistics {
        var stats = ProcessStatistics()
        let ticks = Double(max(1, sysconf(Int32(_SC_CLK_TCK))))
        let page = max(1, sysconf(Int32(_SC_PAGESIZE)))
        if let statm = try? FileIO.readAll("/proc/self/statm") {
            let fields = String(decoding: statm, as: UTF8.self).split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) { stats.residentBytes = pages * page }
        }
        if let stat = try? FileIO.readAll("/proc/self/stat") {
            let text = String(decoding: stat, as: UTF8.self)
            // Fields after the command name, which is in parentheses and may hold spaces.
            if let close = text.lastIndex(of: ")") {
                let fields = text[text.index(after: close)...].split(separator: " ")
                // fields[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
                if fields.count > 19, let user = Double(fields[11]), let system = Double(fields[12]),
                    let start = Double(fields[19])
                {
                    stats.cpuSeconds = (user + system) / ticks
                    stats.startTimeSeconds = Self.bootTime() + start / ticks
                }
            }
        }
        if let directory = opendir("/proc/self/fd") {
            var count = 0
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { $0.first }
                if name != UInt8(ascii: ".") { count += 1 }
            }
            closedir(directory)
            stats.openFDs = max(0, count - 1)  // the directory's own descriptor
        }
        return stats
    }

    /// `btime` of /proc/stat: the boot time in seconds since the epoch.
    static func bootTime() -> Double {
        guard let stat = try? FileIO.readAll("/proc/stat") else { return 0 }
        for line in String(decoding: stat, as: UTF8.self).split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingPrefix(" ")) ?? 0
        }
        return 0
    }
}
