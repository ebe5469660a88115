import Foundation
import Node
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The pieces of a pipeline spread over test hosts: valkey-server (TCP on host 1's address, plus a Unix socket the
/// test itself inspects through — Unix sockets do not depend on the network), `valkeyflight` processes inside the
/// hosts, and a `Coordinator` in the test process on that socket.
struct HostedPipeline {
    let hosts: [TestHost]
    let valkeyURL: String
    let socket: String
    let valkey: ValkeyConnection
    let coordinator: Coordinator

    /// Starts valkey-server on host 1 and a coordinator process (housekeeping: it reaps expired leases) there too.
    static func with<T>(_ hosts: [TestHost], _ body: (HostedPipeline) async throws -> T) async throws -> T {
        let binary = try EmbeddedValkeyServer.locateBinary(explicitPath: ProcessInfo.processInfo.environment["VALKEYFLIGHT_VALKEY_SERVER"])
        let socket = NSTemporaryDirectory() + "vf-hosts-\(getpid())-\(UUID().uuidString.prefix(8)).sock"
        defer { unlink(socket) }
        let server = try hosts[0].spawn(URL(fileURLWithPath: binary), [
            "--bind", hosts[0].address, "--port", "6379", "--unixsocket", socket, "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--protected-mode", "no",
        ])
        var ready = false
        for _ in 0..<200 where !ready {
            guard let line = await server.nextLine(within: 10) else { break }
            ready = line.contains("Ready to accept connections")
        }
        guard ready else { throw FlightTestError("valkey-server on \(hosts[0].namespace) did not start: \(server.stdout) \(server.stderr)") }
        let valkey = try await ValkeyConnection.connect("unix://\(socket)")
        defer { valkey.close() }
        let pipeline = HostedPipeline(hosts: hosts, valkeyURL: "valkey://\(hosts[0].address):6379", socket: socket,
                                      valkey: valkey, coordinator: Coordinator(valkey: valkey))
        let coordinator = try hosts[0].valkeyflight(["coordinator", "--valkey", pipeline.valkeyURL, "--listen", "\(hosts[0].address):0"])
        guard let line = await coordinator.nextLine(within: 20), line.hasPrefix("listening on ") else {
            throw FlightTestError("coordinator did not start: \(coordinator.stderr)")
        }
        return try await body(pipeline)
    }

    /// `valkeyflight flight` on `host`, listening on the wildcard address: returns it and the location it
    /// advertises (which it must say at start).
    func startFlight(on host: TestHost) async throws -> (TestChildProcess, String) {
        let flight = try host.valkeyflight(["flight", "--valkey", self.valkeyURL, "--listen", "0.0.0.0:0"])
        guard let line = await flight.nextLine(within: 20), line.hasPrefix("listening on grpc://0.0.0.0:"),
              let port = Int(line.dropFirst("listening on grpc://0.0.0.0:".count))
        else {
            throw FlightTestError("flight node did not start: \(flight.stderr)")
        }
        let location = "grpc://\(host.address):\(port)"
        #expect(await flight.waitForStderr(containing: "advertising \(location)", within: 10), "\(flight.stderr)")
        return (flight, location)
    }

    /// Submits a batch of `rows` rows through `valkeyflight submit` on `host` to the node at `location`.
    func submit(from host: TestHost, to location: String, queue: String, rows: Int) async throws -> (key: String, input: [UInt8]) {
        let input = try PipelineData.stream(rows: rows, offset: 1)
        let file = NSTemporaryDirectory() + "vf-hosts-\(UUID().uuidString).arrows"
        try Data(input).write(to: URL(fileURLWithPath: file))
        defer { unlink(file) }
        let result = try await host.runValkeyflight(["submit", file, "--server", location, "--queue", queue])
        // `KEY  rows=…  bytes=…  status=pending`
        let key = result.stdout.split(separator: "\n").last?.split(separator: " ").first.map(String.init) ?? ""
        guard result.status == 0, key.hasPrefix("\(queue)/") else {
            throw FlightTestError("submit failed: \(result.status.map(String.init) ?? "signal") \(result.stdout) \(result.stderr)")
        }
        return (key, input)
    }

    /// The result of `key` fetched with `valkeyflight get --result` on `host` from the node at `location`.
    func result(from host: TestHost, at location: String, of key: String) async throws -> [UInt8] {
        let file = NSTemporaryDirectory() + "vf-hosts-\(UUID().uuidString).arrows"
        defer { unlink(file) }
        let result = try await host.runValkeyflight(["get", key, "--result", "-o", file, "--server", location])
        guard result.status == 0 else { throw FlightTestError("get --result \(key) failed: \(result.stderr)") }
        return Array(try Data(contentsOf: URL(fileURLWithPath: file)))
    }

    /// Polls the batch's status (through the Unix socket) until `done` holds or `seconds` pass; returns the last.
    func waitStatus(_ key: String, within seconds: Double, until done: (BatchStatus) -> Bool) async throws -> BatchStatus? {
        let batch = try BatchKey(parsing: key)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var last: BatchStatus?
        while ContinuousClock.now < deadline {
            last = try await self.coordinator.status(batch)
            if let last, done(last) { return last }
            try await Task.sleep(for: .milliseconds(50))
        }
        return last
    }
}

/// Waits (bounded) until process `pid` no longer exists.
func waitGone(_ pid: Int32, within seconds: Double) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if kill(pid, 0) != 0, errno == ESRCH { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return false
}

/// Waits (bounded) until `path` exists; returns its contents.
func waitFile(_ path: String, within seconds: Double) async -> String? {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if let text = try? String(contentsOfFile: path, encoding: .utf8), text.hasSuffix("\n") { return text }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return nil
}

@Suite("Test hosts", .serialized, .enabled(if: TestHosts.unavailable == nil, TestHosts.skipReason))
struct TestHostsTests {
    @Test("hosts reach each other by addresses only they have; a cut host is unreachable until healed")
    func reachCutHeal() async throws {
        let prefix = try await withTestHosts(count: 2) { hosts in
            // The test range exists only inside the hosts.
            let rootAddresses = try TestHosts.run(TestHosts.ipTool ?? "ip", ["-o", "addr"]).output
            #expect(!rootAddresses.contains("10.213."))
            let flight = try hosts[1].valkeyflight(["flight", "--listen", "\(hosts[1].address):0"])
            let line = await flight.nextLine(within: 20) ?? ""
            let location = String(line.dropFirst("listening on ".count))
            try #require(line.hasPrefix("listening on grpc://\(hosts[1].address):"), "\(flight.stderr)")
            let input = try PipelineData.stream(rows: 10)
            let file = NSTemporaryDirectory() + "vf-hosts-\(UUID().uuidString).arrows"
            try Data(input).write(to: URL(fileURLWithPath: file))
            defer { unlink(file) }

            let before = try await hosts[0].runValkeyflight(["submit", file, "--server", location, "--queue", "q"])
            #expect(before.status == 0, "\(before.stderr)")

            try hosts[1].cut()
            // Cut off, nothing answers: the client is still waiting when its bound runs out.
            let stuck = try hosts[0].valkeyflight(["submit", file, "--server", location, "--queue", "q"])
            #expect(!(await stuck.waitForExit(within: 2)))
            stuck.terminate()

            try hosts[1].heal()
            let after = try await hosts[0].runValkeyflight(["submit", file, "--server", location, "--queue", "q"], within: 60)
            #expect(after.status == 0, "\(after.stderr)")
            return hosts[0].set.prefix
        }
        #expect(TestHosts.namespaces(prefix: prefix + "-").isEmpty)
    }

    @Test("everything a failed test made is removed: processes and namespaces")
    func cleanupAfterFailure() async throws {
        struct Planned: Error {}
        let made = TestSlot<(String, Int32)>()
        await #expect(throws: Planned.self) {
            try await withTestHosts(count: 1) { hosts -> Void in
                let child = try hosts[0].spawn(URL(fileURLWithPath: "/bin/sleep"), ["60"])
                made.fill((hosts[0].set.prefix, child.pid))
                throw Planned()
            }
        }
        let (prefix, pid) = await made.value
        #expect(TestHosts.namespaces(prefix: prefix + "-").isEmpty)
        #expect(await waitGone(pid, within: 10))
    }
}

@Suite("Advertised addresses")
struct AdvertisedAddressTests {
    @Test("a loopback address is refused when Valkey is on another host", arguments: [
        ["--listen", "127.0.0.1:0"],
        ["--listen", "0.0.0.0:0", "--advertise", "grpc://localhost:8815"],
        ["--listen", "0.0.0.0:0", "--advertise", "grpc://127.0.0.5:8815"],
    ])
    func loopbackRefused(_ arguments: [String]) async throws {
        for mode in ["flight", "all"] {
            // 192.0.2.0/24 is TEST-NET-1: the refusal comes before any connection is tried.
            let result = try await CLI.run([mode, "--valkey", "valkey://192.0.2.77:6379"] + arguments)
            #expect(result.status != 0)
            #expect(result.stderr.contains("loopback"), "\(result.stderr)")
            #expect(result.stderr.contains("--advertise"), "\(result.stderr)")
        }
    }

    @Test("--advertise must be dialable: no wildcard, no port 0")
    func advertiseWildcardRefused() async throws {
        for advertise in ["grpc://0.0.0.0:8815", "grpc://[::]:8815", "grpc://10.1.2.3:0"] {
            let result = try await CLI.run(["flight", "--listen", "127.0.0.1:0", "--advertise", advertise])
            #expect(result.status != 0)
            #expect(result.stderr.contains(advertise), "\(result.stderr)")
        }
    }

    @Test("listening on a wildcard without --advertise says what it advertises: not the wildcard")
    func wildcardAnnounced() async throws {
        let flight = try TestChildProcess(CLI.binary, ["flight", "--listen", "0.0.0.0:0"])
        defer { flight.terminate() }
        let line = await flight.nextLine(within: 20) ?? ""
        #expect(line.hasPrefix("listening on grpc://0.0.0.0:"), "\(flight.stderr)")
        #expect(await flight.waitForStderr(containing: "advertising grpc://", within: 10), "\(flight.stderr)")
        #expect(!flight.stderr.contains("advertising grpc://0.0.0.0"), "\(flight.stderr)")
        flight.send(SIGTERM)
        #expect(await flight.waitForExit(within: 10))
    }
}

@Suite("Network faults on test hosts", .serialized, .enabled(if: TestHosts.unavailable == nil, TestHosts.skipReason))
struct NetworkFaultTests {
    @Test("a worker cut off mid-batch stops it when its lease runs out and never completes it; a late complete is fenced off; after heal it completes")
    func workerCutOff() async throws {
        try await withTestHosts(count: 3) { hosts in
            try await HostedPipeline.with(hosts) { pipeline in
                let (_, location) = try await pipeline.startFlight(on: hosts[1])
                let directory = NSTemporaryDirectory() + "vf-hosts-\(UUID().uuidString)"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: directory) }
                // Attempt 1 hangs (far longer than the lease); later attempts pass the batch through.
                try await withScript("""
                    echo $$ > \(directory)/attempt-$VALKEYFLIGHT_ATTEMPT.pid
                    if [ "$VALKEYFLIGHT_ATTEMPT" = 1 ]; then exec sleep 60; fi
                    exec cat
                    """) { script in
                    let worker = try hosts[2].valkeyflight([
                        "worker", "--valkey", pipeline.valkeyURL, "--queue", "cut", "--lease", "1500ms", "--max-attempts", "4",
                        "--retry-base", "100ms", "--retry-max", "200ms", "--exec", script, "--grace", "1s",
                    ])
                    let (key, input) = try await pipeline.submit(from: hosts[0], to: location, queue: "cut", rows: 200)
                    let pidText = try #require(await waitFile("\(directory)/attempt-1.pid", within: 20), "\(worker.stderr)")
                    let child = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
                    let batch = try BatchKey(parsing: key)
                    let token = try await pipeline.valkey.send(RESPCommand("HGET", "vf:{cut}:b:\(batch.id)", "token"),
                                                               key: "vf:{cut}:b:\(batch.id)").string
                    let status = try #require(try await pipeline.coordinator.status(batch))
                    let staleClaim = BatchClaim(key: batch, token: try #require(token), attempt: 1, location: status.location,
                                                maxAttempts: status.maxAttempts, rows: status.rows, bytes: status.bytes)

                    try hosts[2].cut()
                    // The worker cannot extend its lease: once it runs out, the worker stops the attempt itself.
                    #expect(await worker.waitForStderr(containing: "the lease was taken away", within: 15), "\(worker.stderr)")
                    #expect(await waitGone(child, within: 10), "the processor of the abandoned attempt still runs")
                    // Meanwhile the coordinator reaped the expired lease: attempt 1 is over, its token dead.
                    let reaped = try await pipeline.waitStatus(key, within: 15) { $0.state != .processing }
                    #expect(reaped?.state != .processing && reaped?.attempts == 1, "\(String(describing: reaped))")
                    #expect(try await pipeline.coordinator.complete(staleClaim, resultKey: nil) == .stale)
                    #expect(try await pipeline.coordinator.extend(staleClaim, lease: .seconds(5)) == .stale)

                    try hosts[2].heal()
                    let done = try await pipeline.waitStatus(key, within: 60) { $0.state == .completed }
                    #expect(done?.state == .completed, "\(String(describing: done)) \(worker.stderr)")
                    // Attempt 2 normally completes; on a machine loaded enough for it to miss a 1.5 s lease, a later one.
                    #expect((done?.attempts ?? 0) >= 2)
                    let result = try await pipeline.result(from: hosts[0], at: location, of: key)
                    #expect(try PipelineData.prices(result) == PipelineData.prices(input))
                    // The worker never reported attempt 1 as completed.
                    let attemptOne = worker.stderr.split(separator: "\n").filter { $0.contains("batch attempt ended") && $0.contains("attempt=1 ") }
                    #expect(attemptOne.count == 1 && attemptOne.allSatisfy { $0.contains("outcome=lease_lost") }, "\(attemptOne)")
                }
            }
        }
    }

    @Test("an unreachable Flight node: the fetch retries, then fails the attempt naming the node; after heal the batch completes and the node serves again")
    func flightNodeCutOff() async throws {
        try await withTestHosts(count: 3) { hosts in
            try await HostedPipeline.with(hosts) { pipeline in
                let (_, location) = try await pipeline.startFlight(on: hosts[1])
                let worker = try hosts[2].valkeyflight([
                    "worker", "--valkey", pipeline.valkeyURL, "--queue", "gone", "--lease", "3s", "--max-attempts", "5",
                    "--retry-base", "200ms", "--retry-max", "500ms", "--grace", "1s",
                ])
                // A first batch leaves the worker with an open connection to the node: the hard case, where a cut
                // makes the next call on it wait in silence (no refused connection, no reset).
                let (warm, _) = try await pipeline.submit(from: hosts[0], to: location, queue: "gone", rows: 10)
                #expect(try await pipeline.waitStatus(warm, within: 30) { $0.state == .completed }?.state == .completed)
                // The worker is held (SIGSTOP) while the batch is submitted and the node's host is cut off.
                worker.send(SIGSTOP)
                let (key, input) = try await pipeline.submit(from: hosts[0], to: location, queue: "gone", rows: 300)
                try hosts[1].cut()
                worker.send(SIGCONT)
                let failed = try await pipeline.waitStatus(key, within: 40) { $0.lastError != nil }
                let error = try #require(failed?.lastError, "\(worker.stderr)")
                #expect(error.contains("node \(location) unreachable"), "\(error)")

                try hosts[1].heal()
                let done = try await pipeline.waitStatus(key, within: 60) { $0.state == .completed }
                #expect(done?.state == .completed, "\(String(describing: done)) \(worker.stderr)")
                let result = try await pipeline.result(from: hosts[0], at: location, of: key)
                #expect(try PipelineData.prices(result) == PipelineData.prices(input))

                // The node's own Valkey connection came back by itself: a new batch registers and completes.
                let (again, _) = try await pipeline.submit(from: hosts[0], to: location, queue: "gone", rows: 10)
                let second = try await pipeline.waitStatus(again, within: 30) { $0.state == .completed }
                #expect(second?.state == .completed)
            }
        }
    }

    @Test("a Flight node cut off while its batch is processed: storing the result stalls, is given up naming the node, and after heal the batch completes")
    func flightNodeCutBeforeStore() async throws {
        try await withTestHosts(count: 3) { hosts in
            try await HostedPipeline.with(hosts) { pipeline in
                let (_, location) = try await pipeline.startFlight(on: hosts[1])
                let directory = NSTemporaryDirectory() + "vf-hosts-\(UUID().uuidString)"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: directory) }
                // Attempt 1 holds its output until the test has cut the node off (at most 30 s).
                try await withScript("""
                    if [ "$VALKEYFLIGHT_ATTEMPT" = 1 ]; then
                      echo started > \(directory)/started; i=0
                      while [ ! -e \(directory)/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
                    fi
                    exec cat
                    """) { script in
                    let worker = try hosts[2].valkeyflight([
                        "worker", "--valkey", pipeline.valkeyURL, "--queue", "store", "--lease", "3s", "--max-attempts", "4",
                        "--retry-base", "200ms", "--retry-max", "500ms", "--exec", script, "--grace", "1s",
                    ])
                    let (key, input) = try await pipeline.submit(from: hosts[0], to: location, queue: "store", rows: 300)
                    try #require(await waitFile("\(directory)/started", within: 20) != nil, "\(worker.stderr)")
                    try hosts[1].cut()
                    #expect(FileManager.default.createFile(atPath: "\(directory)/go", contents: Data()))
                    let failed = try await pipeline.waitStatus(key, within: 40) { $0.lastError != nil }
                    let error = try #require(failed?.lastError, "\(worker.stderr)")
                    #expect(error.contains("node \(location) unreachable") && error.contains("storing the result"), "\(error)")

                    try hosts[1].heal()
                    let done = try await pipeline.waitStatus(key, within: 60) { $0.state == .completed }
                    #expect(done?.state == .completed, "\(String(describing: done)) \(worker.stderr)")
                    let result = try await pipeline.result(from: hosts[0], at: location, of: key)
                    #expect(try PipelineData.prices(result) == PipelineData.prices(input))
                }
            }
        }
    }
}
