// processor-bench: the cost per batch of each processor kind on many small batches.
//   processor-bench [--python PATH] [--script PATH] [--batches N] [--oneshot-batches N] [--rows R]
//                   [--concurrency C] [--modes passthrough,cat,oneshot,persistent]
// `oneshot` runs `PYTHON SCRIPT` once per batch (--exec), `persistent` keeps one `PYTHON SCRIPT` per task
// (--exec-persistent); `cat` is the cost of a process per batch without Python. Prints one line per mode.
import ArrowIPC
import Glibc
import Node
import Synchronization

@main
struct ProcessorBenchmark {
    struct Options {
        var python = ".venv/bin/python"
        var script = "examples/python/double_price.py"
        var batches = 1000
        var oneShotBatches: Int?
        var rows = 100
        var concurrency = 1
        var modes = ["passthrough", "cat", "oneshot", "persistent"]
    }

    static func usage(_ problem: String) -> Never {
        print("processor-bench: \(problem)\nusage: processor-bench [--python PATH] [--script PATH] [--batches N] "
              + "[--oneshot-batches N] [--rows R] [--concurrency C] [--modes passthrough,cat,oneshot,persistent]")
        exit(2)
    }

    static func parse() -> Options {
        var options = Options()
        var arguments = CommandLine.arguments.dropFirst()
        while let flag = arguments.popFirst() {
            guard let value = arguments.popFirst() else { self.usage("\(flag) needs a value") }
            switch flag {
            case "--python": options.python = value
            case "--script": options.script = value
            case "--batches": options.batches = Int(value) ?? 0
            case "--oneshot-batches": options.oneShotBatches = Int(value) ?? 0
            case "--rows": options.rows = Int(value) ?? 0
            case "--concurrency": options.concurrency = Int(value) ?? 0
            case "--modes": options.modes = value.split(separator: ",").map(String.init)
            default: self.usage("unknown option \(flag)")
            }
        }
        guard options.batches > 0, options.rows > 0, options.concurrency > 0, (options.oneShotBatches ?? 1) > 0 else {
            self.usage("--batches, --oneshot-batches, --rows and --concurrency must be positive")
        }
        return options
    }

    /// One small batch: id int64, price float64, name utf8.
    static func input(rows: Int) throws -> (schema: Schema, messages: [StoredMessage]) {
        let schema = Schema([Field("id", .int(.int64)), Field("price", .floatingPoint(.double)), Field("name", .utf8)])
        var writer = IPCWriter(schema: schema, format: .stream)
        let ids = (0..<rows).map { Int64($0) }
        try writer.write(RecordBatch(schema: schema, columns: [
            .primitive(ids.map { $0 }), .primitive(ids.map { Double($0) * 0.5 }), .utf8(ids.map { "item-\($0)" }),
        ]))
        writer.finish()
        let decoded = try ProcessorOutput.decoding(stream: writer.bytes())
        return (decoded.schema, decoded.messages)
    }

    static func quote(_ text: String) -> String {
        "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }

    static func main() async {
        let options = self.parse()
        do {
            let (schema, messages) = try self.input(rows: options.rows)
            let bytes = messages.reduce(0) { $0 + $1.header.count + $1.body.count }
            print("processor-bench: \(options.rows) rows (\(bytes) bytes) per batch, concurrency \(options.concurrency)")
            let python = "\(self.quote(options.python)) \(self.quote(options.script))"
            for mode in options.modes {
                let processor: any BatchProcessor
                var batches = options.batches
                switch mode {
                case "passthrough": processor = PassthroughProcessor()
                case "cat": processor = try ExecProcessor(command: "cat")
                case "oneshot":
                    processor = try ExecProcessor(command: python)
                    batches = options.oneShotBatches ?? options.batches
                case "persistent": processor = try ExecProcessor(command: python, persistent: true)
                default: self.usage("unknown mode \(mode)")
                }
                let report = try await self.run(processor, schema: schema, messages: messages, rows: options.rows,
                                                batches: batches, concurrency: options.concurrency)
                print("\(mode.padding(12)) \(report)")
                if let exec = processor as? ExecProcessor { await exec.shutdown() }
            }
        } catch {
            print("processor-bench: \(error)")
            exit(1)
        }
    }

    struct Report: CustomStringConvertible {
        let batches: Int
        let seconds: Double
        let latencies: [Double]

        var description: String {
            let sorted = self.latencies.sorted()
            func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
            let mean = sorted.reduce(0, +) / Double(sorted.count)
            return "\(self.batches) batches in \(Self.format(self.seconds, 2)) s: \(Self.format(Double(self.batches) / self.seconds, 1)) batches/s, "
                + "per batch \(Self.format(self.seconds * 1000 / Double(self.batches), 3)) ms wall; latency mean \(Self.format(mean, 3)) ms, "
                + "p50 \(Self.format(percentile(0.5), 3)) ms, p99 \(Self.format(percentile(0.99), 3)) ms"
        }

        static func format(_ value: Double, _ digits: Int) -> String {
            var scale = 1.0
            for _ in 0..<digits { scale *= 10 }
            let rounded = (value * scale).rounded() / scale
            let text = String(rounded)
            guard let dot = text.firstIndex(of: ".") else { return text }
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            return decimals < digits ? text + String(repeating: "0", count: digits - decimals) : text
        }
    }

    static func run(_ processor: any BatchProcessor, schema: Schema, messages: [StoredMessage], rows: Int, batches: Int,
                    concurrency: Int) async throws -> Report {
        let input: @Sendable (Int) throws -> ProcessorInput = { index in
            ProcessorInput(key: try BatchKey(queue: "bench", id: "b\(index)"), attempt: 1, schema: schema, messages: messages)
        }
        // Warm-up: one batch per task (starts persistent children, loads Python from the page cache).
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<concurrency { group.addTask { _ = try await processor.process(try input(-1 - task)) } }
            try await group.waitForAll()
        }
        let cursor = Cursor()
        let start = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var latencies: [Double] = []
                    while true {
                        let index = cursor.next.add(1, ordering: .relaxed).oldValue
                        guard index < batches else { return latencies }
                        let begin = ContinuousClock.now
                        let output = try await processor.process(try input(index))
                        let elapsed = ContinuousClock.now - begin
                        guard output.rows == rows else { throw BenchmarkError("batch \(index): \(output.rows) rows, expected \(rows)") }
                        latencies.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                    }
                }
            }
            var all: [Double] = []
            for try await part in group { all += part }
            return all
        }
        let elapsed = ContinuousClock.now - start
        return Report(batches: batches, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                      latencies: latencies)
    }
}

final class Cursor: Sendable {
    let next = Atomic<Int>(0)
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension String {
    func padding(_ width: Int) -> String {
        self.count >= width ? self : self + String(repeating: " ", count: width - self.count)
    }
}
