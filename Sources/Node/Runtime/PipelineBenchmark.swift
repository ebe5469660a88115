internal import ArrowIPC
internal import FlightProto
internal import FlightRPC
internal import Synchronization

/// `valkeyflight bench pipeline`: batches through the whole pipeline in one process — our Flight client submits
/// one-record-batch streams to an `all` node over loopback gRPC, its workers claim them from Valkey, process them
/// (passthrough) and store the results — or, with `coordinatorOnly`, the coordinator's register + claim + complete
/// without data.
package struct PipelineBenchmark: Sendable {
    package var batches = 10_000
    package var rows = 1
    package var workers = 8
    /// Concurrent DoPuts (over `clients` connections).
    package var submitters = 32
    package var clients = 4
    package var coordinatorOnly = false
    /// Batches one claim takes at most (coordinator only), as a worker pool claiming for several slots would.
    package var claimLimit = 1
    /// Sub-queues of the benchmark's queue (coordinator only; 1: a plain queue).
    package var queueShards = 1
    package var valkeyURL: String?
    package var valkeyServerBinary: String?
    /// `--valkey-replicas-ack` (WAIT after every state change); nil: the modes' default end to end, 0 coordinator only.
    package var replicasAck: Int?

    package init() {}

    package struct Report: Sendable, CustomStringConvertible {
        package var batches: Int
        package var rows: Int
        package var seconds: Double
        /// Submit acknowledged → processing started, and → processing finished, in milliseconds (end to end only).
        package var startLatency: (p50: Double, p99: Double)?
        package var processedLatency: (p50: Double, p99: Double)?

        package var batchesPerSecond: Double { Double(self.batches) / self.seconds }

        package var description: String {
            var lines = ["\(Int(self.batchesPerSecond.rounded())) batches/s",
                         "\(Int((Double(self.rows) / self.seconds).rounded())) rows/s",
                         "\(self.batches) batches in \(format3(self.seconds)) s"]
            if let start = self.startLatency {
                lines.append("idle pool: submit→start p50 \(format3(start.p50)) ms, p99 \(format3(start.p99)) ms")
            }
            if let done = self.processedLatency {
                lines.append("idle pool: submit→processed p50 \(format3(done.p50)) ms, p99 \(format3(done.p99)) ms")
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Runs the benchmark; starts a private valkey-server when no URL is given.
    package func run() async throws -> Report {
        var embedded: EmbeddedValkeyServer?
        var url = self.valkeyURL
        if url == nil {
            let server = try await EmbeddedValkeyServer.start(
                binary: try EmbeddedValkeyServer.locateBinary(explicitPath: self.valkeyServerBinary), directory: nil,
                appendOnly: false)
            embedded = server
            url = server.url
        }
        do {
            let report = try await self.coordinatorOnly ? self.runCoordinator(url: url!) : self.runEndToEnd(url: url!)
            await embedded?.stop()
            return report
        } catch {
            await embedded?.stop()
            throw error
        }
    }

    private func runCoordinator(url: String) async throws -> Report {
        let valkey = try await ValkeyConnection.connect(url, clientName: "valkeyflight-bench")
        defer { valkey.close() }
        let result = try await runCoordinatorBenchmark(valkey: valkey, batches: self.batches, concurrency: self.submitters,
                                                       claimLimit: self.claimLimit, shards: self.queueShards,
                                                       replicasAck: self.replicasAck ?? 0)
        return Report(batches: self.batches, rows: 0, seconds: Double(self.batches) / result.batchesPerSecond)
    }

    private func runEndToEnd(url: String) async throws -> Report {
        var configuration = NodeConfiguration(mode: .all)
        configuration.listen = HostPort(host: "127.0.0.1", port: 0)
        configuration.valkeyURL = url
        configuration.replicasAck = self.replicasAck
        configuration.worker.queues = ["bench"]
        configuration.worker.concurrency = self.workers
        configuration.grace = .seconds(5)
        configuration.announcesListening = false
        let recorder = TimingProcessor(expected: self.batches, rows: self.rows)
        let ready = AsyncSlot<String>()
        let stop = AsyncSlot<String>()
        let node = Task {
            try await ValkeyFlightNode.run(configuration, processor: recorder, onReady: { ready.fill($0) },
                                           until: { await stop.value })
        }
        defer { stop.fill("benchmark done") }
        let location = await ready.value
        let clients = try (0..<max(1, self.clients)).map { _ in try FlightClient(location: FlightLocation(parsing: location)) }
        defer { clients.forEach { $0.close() } }

        let schema = Schema([Field("id", .int(.int64)), Field("value", .floatingPoint(.double))])
        let batch = try RecordBatch(schema: schema, columns: [
            .primitive((0..<Int64(self.rows)).map { Optional($0) }),
            .primitive((0..<self.rows).map { Optional(Double($0) * 0.5) }),
        ])
        var writer = IPCWriter(schema: schema, format: .stream)
        try writer.write(batch)
        writer.finish()
        let stream = writer.bytes()

        let next = TicketCounter()
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for submitter in 0..<max(1, self.submitters) {
                let client = clients[submitter % clients.count]
                group.addTask {
                    while true {
                        let index = next.take()
                        guard index < self.batches else { return }
                        let id = "b\(index)"
                        recorder.submitted(id)
                        _ = try await client.put(FlightDescriptor(path: ["bench", id]), ipc: stream[...])
                    }
                }
            }
            try await group.waitForAll()
        }
        guard await recorder.waitUntilDone(timeout: .seconds(600)) else {
            throw NodeError.unavailable("bench pipeline: only \(recorder.processedCount) of \(self.batches) batches were processed in 600 s")
        }
        let elapsed = ContinuousClock.now - started

        // Latency on an idle pool: one batch at a time, each submitted only after the previous one was processed.
        let probes = min(500, max(20, self.batches / 20))
        let idle = TimingProcessor(expected: probes, rows: self.rows)
        recorder.forward(to: idle)
        for index in 0..<probes {
            let id = "idle\(index)"
            idle.submitted(id)
            _ = try await clients[0].put(FlightDescriptor(path: ["bench", id]), ipc: stream[...])
            guard await idle.waitUntilProcessed(count: index + 1, timeout: .seconds(10)) else {
                throw NodeError.unavailable("bench pipeline: idle-pool probe \(id) was not processed within 10 s")
            }
        }
        stop.fill("benchmark done")
        try await node.value
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let (start, processed) = idle.latencies()
        return Report(batches: self.batches, rows: self.batches * self.rows, seconds: seconds,
                      startLatency: start, processedLatency: processed)
    }
}

private func format3(_ value: Double) -> String {
    let scaled = (value * 1000).rounded() / 1000
    return String(scaled)
}

/// A passthrough processor that records, per batch id, when its submit began, processing started and ended.
final class TimingProcessor: BatchProcessor {
    private struct Times {
        var submitted: [String: ContinuousClock.Instant] = [:]
        var spans: [(Duration, Duration)] = []
        var next: TimingProcessor?
    }
    private let times = Mutex(Times())
    private let expected: Int
    private let rows: Int
    private let done = AsyncSlot<Void>()

    init(expected: Int, rows: Int) {
        self.expected = expected
        self.rows = rows
    }

    func submitted(_ id: String) {
        let now = ContinuousClock.now
        self.times.withLock { $0.submitted[id] = now }
    }

    /// Later batches are timed by `next` (the idle-pool phase).
    func forward(to next: TimingProcessor) {
        self.times.withLock { $0.next = next }
    }

    func process(_ input: ProcessorInput) async throws -> ProcessorOutput {
        if let next = self.times.withLock({ $0.next }) { return try await next.process(input) }
        let start = ContinuousClock.now
        let output = ProcessorOutput(schema: input.schema, messages: input.messages, rows: self.rows)
        let end = ContinuousClock.now
        let finished = self.times.withLock { times in
            if let submitted = times.submitted[input.key.id] { times.spans.append((start - submitted, end - submitted)) }
            return times.spans.count
        }
        if finished == self.expected { self.done.fill(()) }
        return output
    }

    var processedCount: Int { self.times.withLock { $0.spans.count } }

    /// Waits (polling every 200 µs, bounded by `timeout`) until `count` batches were processed.
    func waitUntilProcessed(count: Int, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while self.processedCount < count {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .microseconds(200))
        }
        return true
    }

    func waitUntilDone(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.done.value
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            if !first { self.done.fill(()) }  // lets the waiting child finish
            return first
        }
    }

    func latencies() -> ((Double, Double), (Double, Double)) {
        let spans = self.times.withLock { $0.spans }
        func ms(_ duration: Duration) -> Double {
            Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        }
        func percentiles(_ values: [Double]) -> (Double, Double) {
            let sorted = values.sorted()
            guard !sorted.isEmpty else { return (0, 0) }
            return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
        }
        return (percentiles(spans.map { ms($0.0) }), percentiles(spans.map { ms($0.1) }))
    }
}

/// A value set once and awaited by any number of tasks.
final class AsyncSlot<Value: Sendable>: Sendable {
    private struct State { var value: Value?; var waiters: [CheckedContinuation<Value, Never>] = [] }
    private let state = Mutex(State())

    /// Sets the value (only the first call counts) and resumes every waiter.
    func fill(_ value: Value) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Value, Never>] in
            guard state.value == nil else { return [] }
            state.value = value
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: value) }
    }

    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                let ready = self.state.withLock { state -> Value? in
                    if let value = state.value { return value }
                    state.waiters.append(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}

/// Hands out 0, 1, 2, … to concurrent callers.
final class TicketCounter: Sendable {
    private let next = Atomic(0)

    func take() -> Int { self.next.add(1, ordering: .relaxed).oldValue }
}
