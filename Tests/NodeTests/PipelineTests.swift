import ArrowIPC
import FlightProto
import FlightRPC
import Foundation
import GRPCWire
import Node
import Testing

/// The pipeline in one process (ValkeyFlightNode in mode `all`) against a real valkey-server: lifecycle,
/// processors, retries, timeouts, fencing of result writes, DoExchange and the management actions.
@Suite(.serialized) struct PipelineTests {
    static func configuration(_ edit: @escaping (inout NodeConfiguration) -> Void = { _ in }) -> (String) -> NodeConfiguration {
        { url in
            var configuration = NodeConfiguration(mode: .all)
            configuration.valkeyURL = url
            configuration.worker.concurrency = 4
            configuration.worker.queues = ["life", "exec", "fail", "again", "slow", "manage", "pyexample"]
            configuration.grace = .seconds(5)
            edit(&configuration)
            return configuration
        }
    }

    static let python = PyArrow.python.path

    /// A pyarrow processor that doubles the `price` column.
    static let doublePrice = """
        "\(python)" -c "import sys, pyarrow as pa, pyarrow.compute as pc; \
        t = pa.ipc.open_stream(sys.stdin.buffer).read_all(); \
        t = t.set_column(1, 'price', pc.multiply(t['price'], 2)); \
        w = pa.ipc.new_stream(sys.stdout.buffer, t.schema); w.write_table(t); w.close()"
        """

    @Test func passthroughLifecycleStatusActionsAndStats() async throws {
        try await withPrivateValkey { valkey in
            try await InProcessNode.with(Self.configuration()(valkey.url)) { node in
                var keys: [String] = []
                for index in 0..<20 {
                    let put = try await node.submit(try PipelineData.stream(rows: 100 + index), queue: "life")
                    #expect(put["status"] == "pending")
                    #expect(put["rows"] == .int(100 + index))
                    keys.append(try #require(put["key"].string))
                }
                for (index, key) in keys.enumerated() {
                    let status = try await node.waitFinished(key)
                    #expect(status["status"] == "completed", "\(status)")
                    #expect(status["attempts"] == 1)
                    #expect(status["max_attempts"] == 3)
                    #expect(status["queue"] == "life")
                    #expect(status["result_key"] == .string(key + "/result"))
                    #expect(status["location"] == .string(node.location))
                    #expect(status["last_error"] == .null)
                    for field in ["created_at", "updated_at"] {
                        let text = try #require(status[field].string)
                        #expect(text.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/) != nil, "\(field) = \(text)")
                    }
                    // Passthrough: the result is the input, byte for byte.
                    #expect(try await node.fetch(key + "/result") == (try await node.fetch(key)))
                    #expect(try PipelineData.prices(try await node.fetch(key + "/result")).count == 100 + index)
                }
                let stats = try #require(try await node.action("stats").first)
                #expect(stats["life"] == .object(["pending": 0, "processing": 0, "retry_wait": 0, "completed": 20,
                                                  "failed": 0, "cancelled": 0]))
                let listed = try await node.action("list", "{\"queue\":\"life\",\"status\":\"completed\",\"limit\":5}")
                #expect(listed.count == 5)
                #expect(listed.allSatisfy { $0["status"] == "completed" })

                // GetFlightInfo carries the status; delete removes data and status.
                let info = try await node.client.getFlightInfo(FlightDescriptor(path: keys[0].split(separator: "/").map(String.init)))
                let metadata = try PyJSON.lastLine(of: String(decoding: info.appMetadata, as: UTF8.self))
                #expect(metadata["status"] == "completed")
                #expect(metadata["key"] == .string(keys[0]))
                _ = try await node.action("delete", keys[0])
                await #expect(throws: GRPCStatus.self) { try await node.status(keys[0]) }
                await #expect(throws: GRPCStatus.self) { try await node.fetch(keys[0]) }
            }
        }
    }

    @Test(arguments: [CompressionCodec.lz4Frame, .zstd])
    func resultCompressionCompressesWhatPassthroughProduces(_ codec: CompressionCodec) async throws {
        try await withPrivateValkey { valkey in
            let configuration = Self.configuration { $0.worker.resultCompression = codec }
            try await InProcessNode.with(configuration(valkey.url)) { node in
                let input = try PipelineData.stream(rows: 5000)
                let key = try #require(try await node.submit(input, queue: "life")["key"].string)
                #expect(try await node.waitFinished(key)["status"] == "completed")
                let result = try await node.fetch(key + "/result")
                var codecs: [CompressionCodec?] = []
                var messages = try IPCMessageIterator(result[...])
                while let message = try messages.next() {
                    if case let .recordBatch(header) = message.message.header { codecs.append(header.compression) }
                }
                #expect(codecs == [codec], "the result's batches are compressed with \(codec)")
                #expect(try PipelineData.prices(result) == (try PipelineData.prices(input)))
                // pyarrow reads the compressed result as the same table.
                let path = NSTemporaryDirectory() + "vf-result-\(UUID().uuidString).arrows"
                try Data(result).write(to: URL(fileURLWithPath: path))
                defer { unlink(path) }
                let check = "import sys, pyarrow as pa; t = pa.ipc.open_stream(sys.argv[1]).read_all(); print(t.num_rows, sum(t['price'].to_pylist()))"
                let child = try TestChildProcess(PyArrow.python, ["-c", check, path])
                child.closeInput()
                defer { child.terminate() }
                #expect(await child.waitForExit(within: 60))
                #expect(child.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "5000 \((0..<5000).map { Double($0) * 0.5 }.reduce(0, +))",
                        "pyarrow: \(child.stdout) \(child.stderr)")
            }
        }
    }

    @Test func execProcessorResultIsWhatPyarrowComputes() async throws {
        try await withPrivateValkey { valkey in
            let configuration = Self.configuration { $0.processor = .exec(command: Self.doublePrice, persistent: false) }
            try await InProcessNode.with(configuration(valkey.url)) { node in
                let input = try PipelineData.stream(rows: 1000, offset: 1)
                let key = try #require(try await node.submit(input, queue: "exec", id: "double")["key"].string)
                let status = try await node.waitFinished(key, timeout: .seconds(60))
                #expect(status["status"] == "completed", "\(status)")
                let result = try PipelineData.prices(try await node.fetch(key + "/result"))
                #expect(result == (try PipelineData.prices(input)).map { $0.map { $0 * 2 } })
            }
        }
    }

    @Test func failingProcessorRetriesWithBackoffThenFailsWithItsError() async throws {
        try await withPrivateValkey { valkey in
            try await withScript("cat > /dev/null; echo \"boom on attempt $VALKEYFLIGHT_ATTEMPT of $VALKEYFLIGHT_KEY\" >&2; exit 3") { script in
                let configuration = Self.configuration {
                    $0.processor = .exec(command: script, persistent: false)
                    $0.worker.policy = RetryPolicy(maxAttempts: 3, base: .milliseconds(400), max: .seconds(1))
                }
                try await InProcessNode.with(configuration(valkey.url)) { node in
                    let started = ContinuousClock.now
                    let key = try #require(try await node.submit(try PipelineData.stream(rows: 10), queue: "fail")["key"].string)
                    let status = try await node.waitFinished(key)
                    let elapsed = ContinuousClock.now - started
                    #expect(status["status"] == "failed", "\(status)")
                    #expect(status["attempts"] == 3)
                    let error = status["last_error"].string ?? ""
                    #expect(error.contains("boom on attempt 3 of \(key)"), "last_error: \(error)")
                    #expect(error.contains("3"), "exit status in \(error)")
                    // Backoff: attempt 1 → ≥ 200 ms (400 ms × [0.5, 1)), attempt 2 → ≥ 400 ms.
                    #expect(elapsed >= .milliseconds(600), "three attempts took only \(elapsed)")
                }
            }
        }
    }

    @Test func secondAttemptSucceedsAfterAFailedFirst() async throws {
        try await withPrivateValkey { valkey in
            try await withScript("if [ \"$VALKEYFLIGHT_ATTEMPT\" = 1 ]; then cat > /dev/null; echo first >&2; exit 1; fi; exec cat") { script in
                let configuration = Self.configuration {
                    $0.processor = .exec(command: script, persistent: false)
                    $0.worker.policy = RetryPolicy(maxAttempts: 3, base: .milliseconds(50), max: .milliseconds(100))
                }
                try await InProcessNode.with(configuration(valkey.url)) { node in
                    let input = try PipelineData.stream(rows: 64)
                    let key = try #require(try await node.submit(input, queue: "again")["key"].string)
                    let status = try await node.waitFinished(key)
                    #expect(status["status"] == "completed", "\(status)")
                    #expect(status["attempts"] == 2)
                    #expect(try PipelineData.prices(try await node.fetch(key + "/result")) == (try PipelineData.prices(input)))
                }
            }
        }
    }

    @Test func timeoutFailsTheAttemptAndKillsTheChild() async throws {
        try await withPrivateValkey { valkey in
            let configuration = Self.configuration {
                $0.processor = .exec(command: "sleep 30", persistent: false)
                $0.worker.timeout = .milliseconds(500)
                $0.worker.policy = RetryPolicy(maxAttempts: 1, base: .milliseconds(10), max: .milliseconds(10))
            }
            try await InProcessNode.with(configuration(valkey.url)) { node in
                let started = ContinuousClock.now
                let key = try #require(try await node.submit(try PipelineData.stream(rows: 1), queue: "slow")["key"].string)
                let status = try await node.waitFinished(key)
                #expect(status["status"] == "failed", "\(status)")
                #expect((status["last_error"].string ?? "").contains("timed out"), "\(status)")
                #expect(ContinuousClock.now - started < .seconds(10))
            }
        }
    }

    @Test func resultWritesNeedTheCurrentFencingToken() async throws {
        try await withPrivateValkey { valkey in
            // A Flight node with a coordinator and no workers: the test plays the worker.
            var configuration = NodeConfiguration(mode: .flight)
            configuration.valkeyURL = valkey.url
            try await InProcessNode.with(configuration) { node in
                let input = try PipelineData.stream(rows: 5)
                let key = try #require(try await node.submit(input, queue: "fence", id: "b1")["key"].string)
                let connection = try await ValkeyConnection.connect(valkey.url)
                defer { connection.close() }
                let coordinator = Coordinator(valkey: connection)
                let claim = try #require(try await coordinator.claim(queue: "fence", worker: "test", limit: 1,
                                                                     lease: .seconds(30), policy: RetryPolicy()).first)
                func putResult(token: String?) async throws {
                    var headers = GRPCMetadata()
                    if let token { headers.add(FlightStoreService.fencingTokenHeader, token) }
                    let writer = node.client.doPut(FlightDescriptor(path: ["fence", "b1", "result"]), metadata: headers)
                    var messages = try IPCMessageIterator(input[...])
                    while let message = try messages.next() { try await writer.send(message) }
                    _ = try await writer.finish()
                }
                await #expect(throws: GRPCStatus.self) { try await putResult(token: nil) }
                let wrong = await #expect(throws: GRPCStatus.self) { try await putResult(token: "not-the-token") }
                #expect(wrong?.code == .failedPrecondition)
                try await putResult(token: claim.token)
                try await putResult(token: claim.token)  // replace semantics for the current token
                #expect(try await node.fetch(key + "/result") == (try await node.fetch(key)))
                // Once the batch is cancelled, the token is stale: a late writer is refused.
                _ = try await coordinator.cancel(try BatchKey(parsing: key))
                let late = await #expect(throws: GRPCStatus.self) { try await putResult(token: claim.token) }
                #expect(late?.code == .failedPrecondition)
                #expect(try await coordinator.complete(claim, resultKey: nil) == .stale)
            }
        }
    }

    @Test func doExchangeStreamsTheResultBackOrTheError() async throws {
        try await withPrivateValkey { valkey in
            try await withScript("if [ \"$VALKEYFLIGHT_QUEUE\" = bad ]; then cat > /dev/null; echo broken input >&2; exit 2; fi; exec cat") { script in
                let configuration = Self.configuration {
                    $0.processor = .exec(command: script, persistent: false)
                    $0.worker.queues = ["good", "bad"]
                    $0.worker.policy = RetryPolicy(maxAttempts: 1, base: .milliseconds(10), max: .milliseconds(10))
                }
                try await InProcessNode.with(configuration(valkey.url)) { node in
                    let input = try PipelineData.stream(rows: 300)
                    func exchange(_ queue: String) async throws -> [RecordBatch] {
                        let (writer, reader) = node.client.doExchange(FlightDescriptor(path: [queue]))
                        var messages = try IPCMessageIterator(input[...])
                        while let message = try messages.next() { try await writer.send(message) }
                        try await writer.finishSending()
                        return try await reader.readAll()
                    }
                    let batches = try await exchange("good")
                    #expect(batches.map(\.length).reduce(0, +) == 300)
                    let failure = await #expect(throws: GRPCStatus.self) { try await exchange("bad") }
                    #expect(failure?.message.contains("broken input") == true, "\(String(describing: failure))")
                }
            }
        }
    }

    @Test func pyarrowExampleSubmitsWaitsAndReadsTheResult() async throws {
        try await withPrivateValkey { valkey in
            try await InProcessNode.with(Self.configuration()(valkey.url)) { node in
                let script = CLI.packageRoot.appendingPathComponent("examples/python/submit_and_wait.py").path
                let child = try TestChildProcess(PyArrow.python, [script, node.location, "pyexample"])
                child.closeInput()
                defer { child.terminate() }
                #expect(await child.waitForExit(within: 120), "example did not finish; stderr: \(child.stderr)")
                #expect(child.exitStatus == 0, "stderr: \(child.stderr)")
                let lines = child.stdout.split(separator: "\n").map(String.init)
                #expect(lines.count == 2, "stdout: \(child.stdout)")
                let first = try PyJSON.lastLine(of: lines.first ?? "")
                #expect(first["status"] == "completed")
                #expect(first["result_rows"] == 1000)
                #expect(try PyJSON.lastLine(of: lines.last ?? "")["result_rows"] == 1000)
            }
        }
    }

    @Test func retryAndCancelActions() async throws {
        try await withPrivateValkey { valkey in
            try await withScript("cat > /dev/null; exit 1") { script in
                let configuration = Self.configuration {
                    $0.processor = .exec(command: script, persistent: false)
                    $0.worker.policy = RetryPolicy(maxAttempts: 1, base: .milliseconds(10), max: .milliseconds(10))
                }
                try await InProcessNode.with(configuration(valkey.url)) { node in
                    let key = try #require(try await node.submit(try PipelineData.stream(rows: 3), queue: "manage")["key"].string)
                    #expect(try await node.waitFinished(key)["status"] == "failed")
                    let retried = try #require(try await node.action("retry", key).first)
                    #expect(["pending", "processing", "failed"].contains(retried["status"].string ?? ""), "\(retried)")
                    let again = try await node.waitFinished(key)
                    #expect(again["status"] == "failed")
                    #expect(again["attempts"] == 1, "retry resets attempts: \(again)")
                    let completedRetry = await #expect(throws: GRPCStatus.self) { try await node.action("retry", "manage/unknown") }
                    #expect(completedRetry?.code == .notFound)
                    let finishedCancel = await #expect(throws: GRPCStatus.self) { try await node.action("cancel", key) }
                    #expect(finishedCancel?.code == .failedPrecondition)
                    // A batch of a queue no worker claims stays pending until cancelled; then retry makes it pending.
                    let parked = try #require(try await node.submit(try PipelineData.stream(rows: 3), queue: "parked")["key"].string)
                    #expect(try await node.status(parked)["status"] == "pending")
                    #expect(try await node.action("cancel", parked).first?["status"] == "cancelled")
                    #expect(try await node.status(parked)["status"] == "cancelled")
                    #expect(try await node.action("retry", parked).first?["status"] == "pending")
                    let stats = try #require(try await node.action("stats").first)
                    #expect(stats["parked"]["pending"] == 1)
                    #expect(stats["manage"]["failed"] == 1)
                }
            }
        }
    }
}
