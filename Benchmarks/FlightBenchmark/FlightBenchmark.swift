import ArrowIPC
import FlightProto
import Glibc
import FlightRPC
import Node

/// Our Flight client's side of `scripts/bench-flight` (docs/BENCHMARKS.md, "Flight"). Each command connects to a
/// Flight server, times one thing and prints one JSON line shaped like `Benchmarks/flight_pyarrow.py`'s:
///
///     FlightBenchmark LOCATION doput FILE KEY     one DoPut of FILE's IPC messages to path KEY (file read untimed;
///                                                 KEY deleted afterwards with DoAction "delete", untimed)
///     FlightBenchmark LOCATION doget KEY          one DoGet of ticket KEY, every batch decoded and validated
///                                                 (`FlightDataReader.next()`), batches kept until the end
///     FlightBenchmark LOCATION doget-stream KEY   the same, each batch dropped once decoded and validated (how a
///                                                 reader that processes batch by batch consumes a stream)
///     FlightBenchmark LOCATION doget-raw KEY      the same, FlightData only (`nextData()`, no IPC decoding)
///     (doput, doget and doget-stream also report the minor page faults of what they timed)
///     FlightBenchmark LOCATION calls OP KEY TASKS SECONDS
///                                                 OP = getflightinfo (PATH descriptor KEY) or health (DoAction);
///                                                 TASKS tasks share one client and call back to back
@main
struct FlightBenchmark {
    static func say(_ text: String) {
        let line = text + "\n"
        _ = line.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
    }

    static func fail(_ text: String) -> Never {
        let line = "FlightBenchmark: " + text + "\n"
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        exit(1)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func report(_ op: String, _ fields: [(String, String)]) {
        let rest = fields.map { ",\"\($0.0)\":\($0.1)" }.joined()
        Self.say("{\"impl\":\"valkeyflight\",\"op\":\"\(op)\"\(rest)}")
    }

    static func readFile(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { Self.fail("cannot open \(path)") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { Self.fail("cannot stat \(path)") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                read(fd, buffer.baseAddress! + done, buffer.count - done)
            }
            guard got > 0 else { Self.fail("short read of \(path)") }
            done += got
        }
        return bytes
    }

    /// CPU seconds of this process so far, all threads.
    static func cpuTime() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    /// Minor page faults of this process so far (each a page the kernel mapped, and zeroed if new).
    static func pageFaults() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_minflt
    }

    static func descriptor(_ key: String) -> FlightDescriptor {
        FlightDescriptor(path: key.split(separator: "/").map(String.init))
    }

    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard arguments.count >= 3 else {
            Self.fail("usage: FlightBenchmark LOCATION "
                + "(doput FILE KEY | doget KEY | doget-stream KEY | doget-raw KEY | calls OP KEY TASKS SECONDS)")
        }
        let client = try FlightClient(location: FlightLocation(parsing: arguments[0]))
        defer { client.close() }
        let command = arguments[1]
        let rest = Array(arguments.dropFirst(2))
        switch command {
        case "doput" where rest.count == 2:
            try await Self.doPut(client, file: rest[0], key: rest[1])
        case "doget" where rest.count == 1:
            try await Self.doGet(client, key: rest[0], keep: true)
        case "doget-stream" where rest.count == 1:
            try await Self.doGet(client, key: rest[0], keep: false)
        case "doget-raw" where rest.count == 1:
            try await Self.doGetRaw(client, key: rest[0])
        case "calls" where rest.count == 4:
            guard let tasks = Int(rest[2]), tasks > 0, let duration = Double(rest[3]), duration > 0 else {
                Self.fail("calls needs TASKS > 0 and SECONDS > 0")
            }
            try await Self.calls(client, op: rest[0], key: rest[1], tasks: tasks, duration: duration)
        default:
            Self.fail("unknown command or wrong arguments: \(arguments.joined(separator: " "))")
        }
    }

    static func doPut(_ client: FlightClient, file: String, key: String) async throws {
        let bytes = Self.readFile(file)
        let cpu = Self.cpuTime()
        let faults = Self.pageFaults()
        let start = ContinuousClock.now
        let results = try await client.put(Self.descriptor(key), ipc: bytes[...])
        let elapsed = Self.seconds(ContinuousClock.now - start)
        guard !results.isEmpty else { Self.fail("DoPut of \(key) returned no PutResult") }
        let used = Self.cpuTime() - cpu
        Self.report("doput", [("seconds", "\(elapsed)"), ("cpu", "\(used)"), ("bytes", "\(bytes.count)"),
                              ("page_faults", "\(Self.pageFaults() - faults)")])
        _ = try await client.doAction(FlightAction(type: "delete", body: Array(key.utf8)[...]))
    }

    static func doGet(_ client: FlightClient, key: String, keep: Bool) async throws {
        let cpu = Self.cpuTime()
        let faults = Self.pageFaults()
        let start = ContinuousClock.now
        let reader = try await client.doGet(Ticket(Array(key.utf8)))
        var kept: [RecordBatch] = []
        var rows = 0
        var count = 0
        while let batch = try await reader.next() {
            rows += batch.length
            count += 1
            if keep { kept.append(batch) }
        }
        let elapsed = Self.seconds(ContinuousClock.now - start)
        let used = Self.cpuTime() - cpu
        Self.report(keep ? "doget" : "doget-stream", [("seconds", "\(elapsed)"), ("cpu", "\(used)"), ("rows", "\(rows)"),
                              ("batches", "\(count)"), ("page_faults", "\(Self.pageFaults() - faults)")])
    }

    static func doGetRaw(_ client: FlightClient, key: String) async throws {
        let cpu = Self.cpuTime()
        let start = ContinuousClock.now
        let reader = try await client.doGet(Ticket(Array(key.utf8)))
        var messages: [FlightData] = []
        var bytes = 0
        while let data = try await reader.nextData() {
            bytes += data.dataHeader.count + data.dataBody.count
            messages.append(data)
        }
        let elapsed = Self.seconds(ContinuousClock.now - start)
        let used = Self.cpuTime() - cpu
        Self.report("doget-raw", [("seconds", "\(elapsed)"), ("cpu", "\(used)"), ("bytes", "\(bytes)"),
                                  ("messages", "\(messages.count)")])
    }

    static func calls(_ client: FlightClient, op: String, key: String, tasks: Int, duration: Double) async throws {
        let call: @Sendable () async throws -> Void
        switch op {
        case "getflightinfo":
            let descriptor = Self.descriptor(key)
            call = { _ = try await client.getFlightInfo(descriptor) }
        case "health":
            let action = FlightAction(type: "health")
            call = { _ = try await client.doAction(action) }
        default:
            Self.fail("unknown call \(op) (getflightinfo or health)")
        }
        try await call()  // connect and warm up
        let start = ContinuousClock.now
        let end = start.advanced(by: .microseconds(Int64(duration * 1e6)))
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    var mine: [Double] = []
                    mine.reserveCapacity(1 << 16)
                    while true {
                        let t0 = ContinuousClock.now
                        if t0 >= end { return mine }
                        try await call()
                        mine.append(Self.seconds(ContinuousClock.now - t0))
                    }
                }
            }
            var all: [Double] = []
            for try await mine in group { all += mine }
            return all.sorted()
        }
        let elapsed = Self.seconds(ContinuousClock.now - start)
        guard !latencies.isEmpty else { Self.fail("no call completed") }
        let p50 = latencies[latencies.count / 2]
        let p99 = latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        Self.report(op, [("seconds", "\(elapsed)"), ("calls", "\(latencies.count)"), ("concurrency", "\(tasks)"),
                         ("p50", "\(p50)"), ("p99", "\(p99)")])
    }
}
