import FlightProto
import FlightRPC
import Foundation
import Node
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Nodes killed with SIGKILL while holding pending and processing batches, restarted on the same address: with
/// `--data-dir` every acknowledged batch completes with the right result (a file corrupted meanwhile fails its
/// batch saying so); without it they end, failed "data gone" — never stuck.
@Suite(.serialized) struct DurableRestartTests {
    static func client(_ location: String) throws -> FlightClient {
        try FlightClient(location: FlightLocation(parsing: location))
    }

    static func address(_ location: String) -> String { String(location.dropFirst("grpc://".count)) }

    /// Submits `count` batches of `queue` (ids `PREFIX0…`); returns key → input prices.
    static func submit(_ view: InProcessNodeView, queue: String, prefix: String, count: Int) async throws -> [String: [Double?]] {
        var inputs: [String: [Double?]] = [:]
        for index in 0..<count {
            let stream = try PipelineData.stream(rows: 200 + index * 37, offset: Double(index))
            let key = try #require(try await view.submit(stream, queue: queue, id: "\(prefix)\(index)")["key"].string)
            inputs[key] = try PipelineData.prices(stream)
        }
        return inputs
    }

    /// Waits until a worker took up some batch of `keys` (the kill then lands in the middle of an attempt; the
    /// processors take seconds, so the others are still pending or processing then).
    static func waitUntilOneIsProcessing(_ view: InProcessNodeView, _ keys: [String], worker: ModeProcess?) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        var statuses: [String: String] = [:]
        while ContinuousClock.now < deadline {
            for key in keys.sorted() {
                let status = try await view.status(key)
                statuses[key] = "\(status)"
                if status["status"] != "pending" { return }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("no batch was claimed within 60 s: \(statuses); worker stderr: \(worker?.child.stderr ?? "-")")
    }

    @Test(arguments: [true, false])
    func killedFlightNodeRestartedOnItsAddress(durable: Bool) async throws {
        try await withDataDirectory { directory in
            try await withPrivateValkey { valkey in
                let storage = durable ? ["--data-dir", directory] : []
                let flight = try await ModeProcess.start("flight", ["--valkey", valkey.url] + storage)
                let location = try #require(flight.location)
                let view = InProcessNodeView(client: try Self.client(location), location: location)
                defer { view.client.close() }
                let inputs = try await Self.submit(view, queue: "durable", prefix: "d", count: 6)
                // A batch of its own queue, claimed only after the restart, whose file is corrupted meanwhile.
                let damaged = try await Self.submit(view, queue: "damaged", prefix: "x", count: 1)
                let worker = try await ModeProcess.start("worker", [
                    "--valkey", valkey.url, "--queue", "durable", "--concurrency", "2", "--lease", "6s",
                    "--retry-base", "100ms", "--retry-max", "500ms", "--exec", "sleep 2; exec cat",
                ])
                defer { worker.child.terminate() }
                try await Self.waitUntilOneIsProcessing(view, Array(inputs.keys), worker: worker)
                await flight.stop(SIGKILL)
                if durable {
                    let file = directory + "/damaged/x0.arrows"
                    #expect(truncate(file, 100) == 0, "the damaged batch's file exists: errno \(errno)")
                }
                let restarted = try await ModeProcess.start("flight", ["--valkey", valkey.url] + storage,
                                                            listen: Self.address(location))
                defer { restarted.child.terminate() }
                #expect(restarted.location == location)
                let second = try await ModeProcess.start("worker", ["--valkey", valkey.url, "--queue", "damaged"])
                defer { second.child.terminate() }
                var gone = 0
                for (key, prices) in inputs {
                    let status = try await view.waitFinished(key, timeout: .seconds(60))
                    if durable {
                        #expect(status["status"] == "completed", "\(key): \(status)")
                        #expect(try PipelineData.prices(try await view.fetch(key + "/result")) == prices, "\(key)")
                        #expect(try PipelineData.prices(try await view.fetch(key)) == prices, "\(key) input served again")
                    } else {
                        // Never stuck: an attempt that had its input already may still complete; the rest are gone.
                        let state = status["status"].string ?? ""
                        #expect(state == "completed" || state == "failed", "\(key): \(status)")
                        if state == "failed" {
                            gone += 1
                            #expect((status["last_error"].string ?? "").contains("data gone"), "\(status)")
                        }
                    }
                }
                if !durable { #expect(gone > 0, "without --data-dir the restarted node had none of the inputs") }
                for key in damaged.keys {
                    let status = try await view.waitFinished(key, timeout: .seconds(60))
                    #expect(status["status"] == "failed", "\(status)")
                    let error = status["last_error"].string ?? ""
                    #expect(error.contains(durable ? "corrupted" : "data gone"), "\(status)")
                }
                #expect(await restarted.stop() == 0, "stderr: \(restarted.child.stderr)")
                if durable {
                    #expect(restarted.child.stderr.contains("skipping a corrupted batch file"), "\(restarted.child.stderr)")
                }
            }
        }
    }

    @Test func allWithDataDirectoryKilledAndRestartedCompletesEveryBatch() async throws {
        try await withDataDirectory { directory in
            let arguments = ["--data-dir", directory, "--queue", "whole", "--concurrency", "1", "--lease", "3s",
                             "--retry-base", "100ms", "--retry-max", "500ms", "--exec", "sleep 1.5; exec cat"]
            let all = try await ModeProcess.start("all", arguments)
            let location = try #require(all.location)
            let view = InProcessNodeView(client: try Self.client(location), location: location)
            defer { view.client.close() }
            let inputs = try await Self.submit(view, queue: "whole", prefix: "w", count: 5)
            try await Self.waitUntilOneIsProcessing(view, Array(inputs.keys), worker: all)
            // The embedded server is valkey-server or, when that is what PATH has, redis-server.
            let valkeys = (PipelineCrashTests.childProcesses(named: "valkey-server")
                + PipelineCrashTests.childProcesses(named: "redis-server")).filter { $0.parent == all.child.pid }
            #expect(valkeys.count == 1, "the embedded valkey-server runs")
            await all.stop(SIGKILL)
            // Its watchdog stops the private valkey-server; wait until it is gone before reusing its AOF.
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline, valkeys.contains(where: { Self.isRunning($0.pid) }) {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(!valkeys.contains { Self.isRunning($0.pid) }, "the embedded valkey-server outlived its node")
            #expect(FileManager.default.fileExists(atPath: directory + "/.valkey"), "the AOF lives in the data directory")
            let restarted = try await ModeProcess.start("all", arguments, listen: Self.address(location))
            defer { restarted.child.terminate() }
            for (key, prices) in inputs {
                let status = try await view.waitFinished(key, timeout: .seconds(60))
                #expect(status["status"] == "completed", "\(key): \(status)")
                #expect(try PipelineData.prices(try await view.fetch(key + "/result")) == prices, "\(key)")
            }
            #expect(await restarted.stop() == 0, "stderr: \(restarted.child.stderr)")
            // Without --data-dir `all` says it keeps everything in memory.
            let memory = try await ModeProcess.start("all", ["--queue", "whole"])
            defer { memory.child.terminate() }
            #expect(await memory.child.waitForStderr(containing: "in memory only", within: 20), "\(memory.child.stderr)")
        }
    }

    @Test func durabilityOptionsAreChecked() async throws {
        let orphan = try await CLI.run(["flight", "--listen", "127.0.0.1:0", "--fsync", "never"])
        #expect(orphan.status != 0 && orphan.stderr.contains("--fsync and --max-disk need --data-dir"), "\(orphan.stderr)")
        let bad = try await CLI.run(["flight", "--listen", "127.0.0.1:0", "--data-dir", "/tmp", "--fsync", "sometimes"])
        #expect(bad.status != 0 && bad.stderr.contains("always"), "\(bad.stderr)")
        // A data directory that is a file cannot be used: the node says so and does not start.
        try await withDataDirectory { directory in
            let file = directory + "/plain"
            #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
            let refused = try await CLI.run(["flight", "--listen", "127.0.0.1:0", "--data-dir", file])
            #expect(refused.status != 0 && refused.stderr.contains(file), "\(refused.stderr)")
        }
    }

    /// Whether `pid` exists and is not a zombie.
    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        let state = stat.split(separator: ")").last?.split(separator: " ").first
        return state != "Z"
    }
}
