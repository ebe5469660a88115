import FlightProto
import FlightRPC
import Foundation
import Node
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A `valkeyflight MODE …` process; serving modes are ready once their `listening on` line arrived.
final class ModeProcess: @unchecked Sendable {
    let child: TestChildProcess
    let location: String?

    private init(child: TestChildProcess, location: String?) {
        self.child = child
        self.location = location
    }

    static func start(_ mode: String, _ arguments: [String], listen: String = "127.0.0.1:0") async throws -> ModeProcess {
        let serving = mode != "worker"
        let child = try TestChildProcess(CLI.binary, [mode] + (serving ? ["--listen", listen] : []) + arguments)
        guard serving else { return ModeProcess(child: child, location: nil) }
        guard let line = await child.nextLine(within: 30), line.hasPrefix("listening on ") else {
            child.terminate()
            throw FlightTestError("\(mode) did not start; stderr: \(child.stderr)")
        }
        return ModeProcess(child: child, location: String(line.dropFirst("listening on ".count)))
    }

    /// SIGTERM (or `signal`), then waits; returns the exit status (nil: killed by a signal or still running).
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM, within seconds: Double = 15) async -> Int32? {
        self.child.send(signal)
        guard await self.child.waitForExit(within: seconds) else {
            self.child.terminate()
            return nil
        }
        return self.child.exitStatus
    }

    deinit { self.child.terminate() }
}

/// The pipeline across processes: workers and Flight nodes killed, Valkey restarted, every mode stopped gracefully.
@Suite(.serialized) struct PipelineCrashTests {
    static func client(_ location: String?) throws -> FlightClient {
        try FlightClient(location: FlightLocation(parsing: try #require(location)))
    }

    static func node(_ client: FlightClient, _ location: String) -> InProcessNodeView {
        InProcessNodeView(client: client, location: location)
    }

    @Test func killedWorkerIsReclaimedAfterItsLeaseAndCompletedElsewhere() async throws {
        try await withPrivateValkey { valkey in
            let flight = try await ModeProcess.start("flight", ["--valkey", valkey.url])
            defer { flight.child.terminate() }
            let client = try Self.client(flight.location)
            defer { client.close() }
            let view = Self.node(client, flight.location!)
            // Stuck until its worker is gone: once the worker is killed, the next echo hits a closed pipe, so the
            // processor (in a process group of its own, which the SIGKILL of the worker does not reach) ends too.
            try await withScript("cat > /dev/null; while echo waiting; do sleep 1; done") { stuck in
                let first = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "crash", "--exec", stuck, "--lease", "1s"])
                let key = try #require(try await view.submit(try PipelineData.stream(rows: 50), queue: "crash", id: "w1")["key"].string)
                let processing = try await view.waitFor(key) { $0["status"] == "processing" }
                #expect(processing["attempts"] == 1)
                await first.stop(SIGKILL)
                let second = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "crash", "--lease", "1s"])
                defer { second.child.terminate() }
                let status = try await view.waitFinished(key, timeout: .seconds(30))
                #expect(status["status"] == "completed", "\(status)")
                #expect(status["attempts"] == 2, "the reaped attempt counts: \(status)")
                #expect(try await view.fetch(key + "/result") == (try await view.fetch(key)))
            }
        }
    }

    @Test func batchesOfAKilledFlightNodeFailSayingTheirDataIsGone() async throws {
        try await withPrivateValkey { valkey in
            let flight = try await ModeProcess.start("flight", ["--valkey", valkey.url])
            let location = try #require(flight.location)
            var keys: [String] = []
            do {
                let client = try Self.client(location)
                defer { client.close() }
                for index in 0..<3 {
                    keys.append(try #require(try await Self.node(client, location).submit(
                        try PipelineData.stream(rows: 10), queue: "gone", id: "g\(index)")["key"].string))
                }
            }
            await flight.stop(SIGKILL)
            // The node comes back on the same address without its data (no --data-dir).
            let restarted = try await ModeProcess.start("flight", ["--valkey", valkey.url], listen: String(location.dropFirst("grpc://".count)))
            defer { restarted.child.terminate() }
            let worker = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "gone"])
            defer { worker.child.terminate() }
            let client = try Self.client(location)
            defer { client.close() }
            for key in keys {
                let status = try await Self.node(client, location).waitFinished(key, timeout: .seconds(30))
                #expect(status["status"] == "failed", "\(status)")
                #expect((status["last_error"].string ?? "").contains("data gone"), "\(status)")
                #expect(status["attempts"] == 1, "data gone fails at once: \(status)")
            }
        }
    }

    @Test func valkeyRestartedWithAOFLosesNoAcknowledgedBatch() async throws {
        let directory = NSTemporaryDirectory() + "vf-aof-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var url = ""
        var acknowledged: [String] = []
        var flight: ModeProcess?
        defer { flight?.child.terminate() }
        try await withPrivateValkey(appendOnly: true, directory: directory) { valkey in
            url = valkey.url
            flight = try await ModeProcess.start("flight", ["--valkey", valkey.url])
            let client = try Self.client(flight?.location)
            defer { client.close() }
            for index in 0..<20 {
                acknowledged.append(try #require(try await Self.node(client, flight!.location!).submit(
                    try PipelineData.stream(rows: 5), queue: "aof", id: "a\(index)")["key"].string))
            }
            kill(valkey.pid, SIGKILL)
        }
        // The same directory and socket: AOF (appendfsync always) brings every acknowledged registration back.
        try await withPrivateValkey(appendOnly: true, directory: directory) { valkey in
            #expect(valkey.url == url)
            let location = try #require(flight?.location)
            let client = try Self.client(location)
            defer { client.close() }
            // The Flight node reconnects by itself: new submits succeed again within a bounded time.
            var submitted = false
            for index in 0..<100 where !submitted {
                do {
                    acknowledged.append(try #require(try await Self.node(client, location).submit(
                        try PipelineData.stream(rows: 5), queue: "aof", id: "after\(index)")["key"].string))
                    submitted = true
                } catch {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(submitted, "the Flight node did not reconnect to the restarted Valkey")
            let worker = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "aof", "--concurrency", "4"])
            defer { worker.child.terminate() }
            for key in acknowledged {
                let status = try await Self.node(client, location).waitFinished(key, timeout: .seconds(30))
                #expect(status["status"] == "completed", "\(key): \(status)")
            }
        }
    }

    @Test func everyModeStopsGracefullyAndReleasesWhatCannotFinish() async throws {
        try await withPrivateValkey { valkey in
            let coordinator = try await ModeProcess.start("coordinator", ["--valkey", valkey.url])
            let flight = try await ModeProcess.start("flight", ["--valkey", valkey.url])
            let client = try Self.client(flight.location)
            defer { client.close() }
            let view = Self.node(client, flight.location!)
            try await withScript("cat > /dev/null; sleep 30") { stuck in
                // A batch that finishes within the grace period completes; one that cannot is released, not failed.
                try await withScript("cat > /tmp/vf-grace-$$; sleep 1; cat /tmp/vf-grace-$$; rm -f /tmp/vf-grace-$$") { slow in
                    let finishing = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "finish", "--exec", slow, "--grace", "10s"])
                    let releasing = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "release", "--exec", stuck, "--grace", "1s"])
                    let done = try #require(try await view.submit(try PipelineData.stream(rows: 8), queue: "finish")["key"].string)
                    let held = try #require(try await view.submit(try PipelineData.stream(rows: 8), queue: "release")["key"].string)
                    // Claimed: `done`'s one-second processor may already have finished between two polls on a
                    // loaded machine, which is as good (it was never at risk of being released).
                    _ = try await view.waitFor(done) { $0["status"] == "processing" || $0["status"] == "completed" }
                    _ = try await view.waitFor(held) { $0["status"] == "processing" }
                    let started = ContinuousClock.now
                    #expect(await finishing.stop(within: 20) == 0, "stderr: \(finishing.child.stderr)")
                    #expect(try await view.status(done)["status"] == "completed")
                    #expect(await releasing.stop(within: 20) == 0, "stderr: \(releasing.child.stderr)")
                    #expect(ContinuousClock.now - started < .seconds(15))
                    let released = try await view.status(held)
                    #expect(released["status"] == "pending", "released at shutdown: \(released)")
                    #expect(released["attempts"] == 0, "a released attempt does not count: \(released)")
                }
            }
            #expect(await coordinator.stop() == 0, "stderr: \(coordinator.child.stderr)")
            #expect(await flight.stop() == 0, "stderr: \(flight.child.stderr)")
            // `all` on its embedded default: starts, serves, stops, and leaves no valkey-server behind.
            let all = try await ModeProcess.start("all", [])
            let allClient = try Self.client(all.location)
            defer { allClient.close() }
            let key = try #require(try await Self.node(allClient, all.location!).submit(try PipelineData.stream(rows: 8), queue: "default")["key"].string)
            #expect(try await Self.node(allClient, all.location!).waitFinished(key)["status"] == "completed")
            let pid = all.child.pid
            #expect(await all.stop() == 0, "stderr: \(all.child.stderr)")
            let leftover = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) != nil
            #expect(!leftover)
            #expect(!Self.childProcesses(named: "valkey-server").contains { $0.parent == pid }, "embedded valkey-server left running")
        }
    }

    /// Processes named `name` with their parent pids.
    static func childProcesses(named name: String) -> [(pid: Int32, parent: Int32)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> (Int32, Int32)? in
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  stat.contains("(\(name))") else { return nil }
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            return (pid, fields.count > 1 ? Int32(fields[1]) ?? 0 : 0)
        }
    }

    @Test func mixedLoadWithRandomKillsAccountsForEveryBatch() async throws {
        try await withPrivateValkey { valkey in
            let flight = try await ModeProcess.start("flight", ["--valkey", valkey.url])
            defer { flight.child.terminate() }
            let location = try #require(flight.location)
            let client = try Self.client(location)
            defer { client.close() }
            let view = Self.node(client, location)
            // A processor that takes a while, so kills land in the middle of batches.
            let workerArguments = ["--valkey", valkey.url, "--queue", "mixed", "--lease", "1s", "--concurrency", "2",
                                   "--max-attempts", "20", "--retry-base", "50ms", "--retry-max", "200ms",
                                   "--exec", "sleep 0.1; exec cat"]
            var workers: [ModeProcess] = []
            var coordinators: [ModeProcess] = []
            for _ in 0..<3 { workers.append(try await ModeProcess.start("worker", workerArguments)) }
            for _ in 0..<2 { coordinators.append(try await ModeProcess.start("coordinator", ["--valkey", valkey.url])) }
            defer {
                for process in workers + coordinators { process.child.terminate() }
            }
            var inputs: [String: [Double?]] = [:]
            var generator = SystemRandomNumberGenerator()
            let deadline = ContinuousClock.now + .seconds(25)
            var round = 0
            while ContinuousClock.now < deadline, round < 200 {
                round += 1
                for _ in 0..<3 {
                    let stream = try PipelineData.stream(rows: Int.random(in: 1...500, using: &generator), offset: Double(round))
                    let key = try #require(try await view.submit(stream, queue: "mixed")["key"].string)
                    inputs[key] = try PipelineData.prices(stream)
                }
                if round % 4 == 0 {
                    let victim = Int.random(in: 0..<workers.count, using: &generator)
                    await workers[victim].stop(Bool.random(using: &generator) ? SIGKILL : SIGTERM, within: 15)
                    workers[victim] = try await ModeProcess.start("worker", workerArguments)
                }
                if round % 7 == 0 {
                    let victim = Int.random(in: 0..<coordinators.count, using: &generator)
                    await coordinators[victim].stop(SIGKILL)
                    coordinators[victim] = try await ModeProcess.start("coordinator", ["--valkey", valkey.url])
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            var completed = 0
            for (key, prices) in inputs {
                let status = try await view.waitFinished(key, timeout: .seconds(60))
                #expect(status["status"] == "completed", "\(key): \(status)")
                if status["status"] == "completed" {
                    completed += 1
                    #expect(try PipelineData.prices(try await view.fetch(key + "/result")) == prices, "\(key) result differs")
                }
            }
            #expect(completed == inputs.count)
            let stats = try #require(try await view.action("stats").first)
            #expect(stats["mixed"]["completed"] == .int(inputs.count), "\(stats)")
            for state in ["pending", "processing", "retry_wait", "failed", "cancelled"] {
                #expect(stats["mixed"][state] == 0, "\(state) in \(stats)")
            }
        }
    }
}

/// The client side of InProcessNode, for nodes in other processes.
struct InProcessNodeView: Sendable {
    let client: FlightClient
    let location: String

    private var node: InProcessNode { InProcessNode(location: self.location, client: self.client) }

    func submit(_ ipc: [UInt8], queue: String, id: String? = nil) async throws -> PyJSON {
        try await self.node.submit(ipc, queue: queue, id: id)
    }

    func action(_ type: String, _ body: String = "") async throws -> [PyJSON] { try await self.node.action(type, body) }
    func status(_ key: String) async throws -> PyJSON { try await self.node.status(key) }
    func fetch(_ key: String) async throws -> [UInt8] { try await self.node.fetch(key) }

    func waitFinished(_ key: String, timeout: Duration = .seconds(30)) async throws -> PyJSON {
        try await self.node.waitFinished(key, timeout: timeout)
    }

    /// Polls the status until `condition` holds (or `timeout`, then it fails the test).
    func waitFor(_ key: String, timeout: Duration = .seconds(20), _ condition: (PyJSON) -> Bool) async throws -> PyJSON {
        let deadline = ContinuousClock.now + timeout
        while true {
            let status = try await self.status(key)
            if condition(status) { return status }
            guard ContinuousClock.now < deadline else {
                Issue.record("\(key) never reached the expected state: \(status)")
                return status
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
