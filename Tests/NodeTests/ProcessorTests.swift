import ArrowIPC
import Foundation
import Glibc
import Node
import Testing

/// Inputs, commands and checks shared by the processor suites. Every test runs real child processes.
enum ProcessorSupport {
    static let examples = CLI.packageRoot.appendingPathComponent("examples/python")

    static var python: String { PyArrow.python.path }

    static func key(_ id: String = "b1", queue: String = "q") -> BatchKey {
        try! BatchKey(queue: queue, id: id)
    }

    /// A batch of `rows` rows: id (int64), price (float64, every 7th null), name (utf8).
    static func input(rows: Int = 5, id: String = "b1", attempt: Int = 1, batches: Int = 1) throws -> ProcessorInput {
        let schema = Schema([Field("id", .int(.int64)), Field("price", .floatingPoint(.double)), Field("name", .utf8)])
        var writer = IPCWriter(schema: schema, format: .stream)
        for batch in 0..<batches {
            let ids = (0..<rows).map { Int64(batch * rows + $0) }
            let prices: [Double?] = ids.map { $0 % 7 == 3 ? nil : Double($0) * 1.25 }
            let names: [String?] = ids.map { "item-\($0)" }
            try writer.write(RecordBatch(schema: schema, columns: [.primitive(ids.map { $0 }), .primitive(prices), .utf8(names)]))
        }
        writer.finish()
        let decoded = try ProcessorOutput.decoding(stream: writer.bytes())
        return ProcessorInput(key: self.key(id), attempt: attempt, schema: decoded.schema, messages: decoded.messages)
    }

    static func streamBytes(_ input: ProcessorInput) -> [UInt8] {
        input.streamSegments.flatMap { $0 }
    }

    static func streamBytes(_ output: ProcessorOutput) -> [UInt8] {
        ProcessorInput(key: self.key(), attempt: 1, schema: output.schema, messages: output.messages).streamSegments.flatMap { $0 }
    }

    /// The `ProcessorError` an attempt threw (nil if it succeeded or threw something else).
    static func error(_ processor: some BatchProcessor, _ input: ProcessorInput) async -> ProcessorError? {
        do {
            _ = try await processor.process(input)
            return nil
        } catch let error as ProcessorError {
            return error
        } catch {
            return nil
        }
    }

    /// Whether a process with this pid exists at all (a zombie still has /proc/PID).
    static func exists(_ pid: Int32) -> Bool {
        access("/proc/\(pid)", F_OK) == 0
    }

    /// Pids of every process in process group `group`, from /proc/*/stat.
    static func members(ofGroup group: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { name -> Int32? in
            guard let pid = Int32(name),
                  let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")")
            else { return nil }
            // After "pid (comm)": state ppid pgrp …
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[2]) == group ? pid : nil
        }
    }

    /// Waits (bounded: `seconds`, polling every 10 ms) until `condition` holds.
    static func eventually(within seconds: Double = 10, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    /// Runs `python -c script args…` to completion and returns its stdout; fails on a non-zero exit.
    static func runPython(_ script: String, _ arguments: [String], timeout: Double = 60) async throws -> String {
        let child = try TestChildProcess(PyArrow.python, ["-c", script] + arguments,
                                         environment: ["PYTHONDONTWRITEBYTECODE": "1"])
        child.closeInput()
        defer { child.terminate() }
        guard await child.waitForExit(within: timeout) else {
            throw FlightTestError("python did not finish within \(timeout) s; stderr:\n\(child.stderr)")
        }
        guard child.exitStatus == 0 else { throw FlightTestError("python failed:\n\(child.stderr)") }
        return child.stdout
    }

    static func temporaryFile(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("vf-processor-\(UUID().uuidString)-\(name)").path
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func shellQuote(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// `python double_price.py` as a shell command.
    static var doublePriceCommand: String {
        "\(self.shellQuote(self.python)) \(self.shellQuote(self.examples.appendingPathComponent("double_price.py").path))"
    }

    /// Asks pyarrow whether `output` equals double_price.py's `process` applied to `input` with this context.
    static func checkAgainstPyArrow(input: ProcessorInput, output: ProcessorOutput) async throws -> String {
        let inputPath = self.temporaryFile("in.arrows")
        let outputPath = self.temporaryFile("out.arrows")
        defer {
            unlink(inputPath)
            unlink(outputPath)
        }
        try self.write(self.streamBytes(input), to: inputPath)
        try self.write(self.streamBytes(output), to: outputPath)
        let script = """
            import sys
            sys.path.insert(0, sys.argv[1])
            import pyarrow as pa
            from double_price import process
            from valkeyflight_processor import Context
            table = pa.ipc.open_stream(open(sys.argv[2], "rb").read()).read_all()
            expected = process(table, Context(sys.argv[4], sys.argv[4].split("/")[0], sys.argv[4].split("/")[1], int(sys.argv[5])))
            ours = pa.ipc.open_stream(open(sys.argv[3], "rb").read()).read_all()
            print("equal" if ours.equals(expected, check_metadata=True) else f"different:\\n{ours}\\nexpected:\\n{expected}")
            """
        return try await self.runPython(script, [self.examples.path, inputPath, outputPath, input.key.description,
                                           String(input.attempt)]).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProcessorTests {
    @Test func passthroughReturnsTheInputMessagesUncopied() async throws {
        let input = try ProcessorSupport.input(rows: 20, batches: 3)
        let output = try await PassthroughProcessor().process(input)
        #expect(output.rows == 60)
        #expect(output.schema == input.schema)
        #expect(output.messages.count == input.messages.count)
        for (ours, theirs) in zip(output.messages, input.messages) {
            #expect(ours.header == theirs.header)
            #expect(ours.body == theirs.body)
            // The same storage: nothing was copied.
            let same = ours.body.withUnsafeBytes { a in theirs.body.withUnsafeBytes { b in a.baseAddress == b.baseAddress } }
            #expect(same)
        }
    }

    @Test func streamSegmentsAreAStreamPyArrowReads() async throws {
        let input = try ProcessorSupport.input(rows: 10, batches: 2)
        let path = ProcessorSupport.temporaryFile("segments.arrows")
        defer { unlink(path) }
        try ProcessorSupport.write(ProcessorSupport.streamBytes(input), to: path)
        let rows = try await ProcessorSupport.runPython(
            "import sys, pyarrow as pa; t = pa.ipc.open_stream(open(sys.argv[1], 'rb').read()).read_all(); print(t.num_rows, t.column_names)",
            [path])
        #expect(rows.trimmingCharacters(in: .whitespacesAndNewlines) == "20 ['id', 'price', 'name']")
    }

    @Test func catIsAnIdentityProcessor() async throws {
        let input = try ProcessorSupport.input(rows: 1000, batches: 4)
        let output = try await ExecProcessor(command: "cat").process(input)
        #expect(output.rows == 4000)
        #expect(ProcessorSupport.streamBytes(output) == ProcessorSupport.streamBytes(input))
    }

    @Test func pythonProcessorTransformsTheBatchAsPyArrowDoes() async throws {
        let input = try ProcessorSupport.input(rows: 50, id: "prices-7", attempt: 2, batches: 2)
        let processor = try ExecProcessor(command: ProcessorSupport.doublePriceCommand)
        let output = try await processor.process(input)
        #expect(output.rows == 100)
        #expect(output.schema.fields.map(\.name) == ["id", "price", "name", "source", "attempt"])
        #expect(try await ProcessorSupport.checkAgainstPyArrow(input: input, output: output) == "equal")
    }

    @Test func theChildSeesTheBatchInItsEnvironment() async throws {
        let input = try ProcessorSupport.input(id: "env-check", attempt: 3)
        let command = "printf '%s|%s|%s|%s|%s' \"$VALKEYFLIGHT_KEY\" \"$VALKEYFLIGHT_QUEUE\" \"$VALKEYFLIGHT_ID\" "
            + "\"$VALKEYFLIGHT_ATTEMPT\" \"${VALKEYFLIGHT_PERSISTENT:-unset}\" >&2; exit 4"
        let error = await ProcessorSupport.error(try ExecProcessor(command: command), input)
        #expect(error == .exited(status: 4, stderrTail: "q/env-check|q|env-check|3|unset"))
    }

    @Test func nonZeroExitFailsWithTheStderrTail() async throws {
        let error = await ProcessorSupport.error(
            try ExecProcessor(command: "cat >/dev/null; echo 'first line' >&2; echo 'ValueError: no price column' >&2; exit 3"),
            try ProcessorSupport.input())
        #expect(error == .exited(status: 3, stderrTail: "first line\nValueError: no price column"))
        #expect(error?.description == "processor exited with status 3: first line\nValueError: no price column")
    }

    @Test func aPythonExceptionFailsWithItsTraceback() async throws {
        let script = ProcessorSupport.temporaryFile("fails.py")
        defer { unlink(script) }
        try ProcessorSupport.write(Array("""
            import sys
            sys.path.insert(0, \(ProcessorSupport.shellQuote(ProcessorSupport.examples.path).replacingOccurrences(of: "'", with: "\"")))
            from valkeyflight_processor import run
            def process(table, context):
                print("looking at", context.key)
                raise ValueError(f"cannot price {table.num_rows} rows")
            run(process)
            """.utf8), to: script)
        let error = await ProcessorSupport.error(
            try ExecProcessor(command: "\(ProcessorSupport.shellQuote(ProcessorSupport.python)) \(script)"),
            try ProcessorSupport.input(rows: 9))
        guard case let .exited(status, tail) = error else {
            Issue.record("expected exited, got \(String(describing: error))")
            return
        }
        #expect(status == 1)
        #expect(tail.hasSuffix("ValueError: cannot price 9 rows"))
        #expect(tail.contains("looking at q/b1"))  // print() went to stderr, not into the output
    }

    @Test func aMissingCommandExitsWith127() async throws {
        let error = await ProcessorSupport.error(try ExecProcessor(command: "no-such-processor-xyz --flag"),
                                                 try ProcessorSupport.input())
        guard case let .exited(status, tail) = error else {
            Issue.record("expected exited, got \(String(describing: error))")
            return
        }
        #expect(status == 127)
        #expect(tail.contains("not found"))
    }

    @Test func aChildKilledBySignalIsReportedAsKilled() async throws {
        let error = await ProcessorSupport.error(try ExecProcessor(command: "echo dying >&2; kill -SEGV $$"),
                                                 try ProcessorSupport.input())
        #expect(error == .killed(signal: SIGSEGV, stderrTail: "dying"))
        #expect(error?.description == "processor was killed by signal 11 (SIGSEGV): dying")
    }

    @Test(arguments: [
        ("garbage", "echo 'hello, this is not arrow'", "not an Arrow IPC stream"),
        ("empty", "cat >/dev/null", "empty output"),
        ("truncated", "head -c 300", "truncated"),
        ("file format", "printf 'ARROW1\\0\\0'", "Arrow IPC file"),
        ("trailing data", "cat; echo extra", "after the end-of-stream marker"),
    ])
    func badOutputIsRejected(name: String, command: String, expected: String) async throws {
        let error = await ProcessorSupport.error(try ExecProcessor(command: command), try ProcessorSupport.input(rows: 100))
        guard case let .badOutput(message, _) = error else {
            Issue.record("\(name): expected badOutput, got \(String(describing: error))")
            return
        }
        #expect(message.contains(expected), "\(name): \(message)")
    }

    @Test func aChildThatNeverReadsItsInputIsBadOutputNotAHang() async throws {
        // 8 MB of input: far more than a pipe holds, so the write meets EPIPE once the child is gone.
        let input = try ProcessorSupport.input(rows: 200_000)
        let start = ContinuousClock.now
        let error = await ProcessorSupport.error(try ExecProcessor(command: "echo garbage; echo bye >&2; exit 0"), input)
        guard case let .badOutput(message, tail) = error else {
            Issue.record("expected badOutput, got \(String(describing: error))")
            return
        }
        #expect(message.contains("not an Arrow IPC stream"))
        #expect(tail == "bye")
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func aChildThatWritesBeforeReadingDoesNotDeadlock() async throws {
        // Writes 4 MB before it reads anything while we write 8 MB: both directions must flow at once.
        let input = try ProcessorSupport.input(rows: 200_000)
        let error = await ProcessorSupport.error(
            try ExecProcessor(command: "head -c 4000000 /dev/zero; cat >/dev/null; echo read-all >&2"), input)
        guard case let .badOutput(_, tail) = error else {
            Issue.record("expected badOutput, got \(String(describing: error))")
            return
        }
        #expect(tail == "read-all")
        // And a valid big result after reading a big input.
        let output = try await ExecProcessor(command: "cat").process(input)
        #expect(output.rows == 200_000)
    }

    @Test func aCancelledChildIsKilledPromptlyWithItsGroupAndReaped() async throws {
        let processor = try ExecProcessor(command: "sleep 60 & sleep 60; wait")
        let input = try ProcessorSupport.input()
        let task = Task { await ProcessorSupport.error(processor, input) }
        #expect(await ProcessorSupport.eventually { !processor.childPIDs.isEmpty })
        let pid = try #require(processor.childPIDs.first)
        #expect(await ProcessorSupport.eventually { ProcessorSupport.members(ofGroup: pid).count >= 3 })
        let start = ContinuousClock.now
        task.cancel()
        let error = await task.value
        #expect(error == .cancelled)
        #expect(ContinuousClock.now - start < .seconds(5))
        // Reaped before process() returned (a zombie would still be in /proc), and nothing of its group is left.
        #expect(!ProcessorSupport.exists(pid))
        #expect(await ProcessorSupport.eventually(within: 5) { ProcessorSupport.members(ofGroup: pid).isEmpty })
        #expect(processor.childPIDs.isEmpty)
    }

    @Test func aTaskCancelledBeforeItStartsSpawnsNothing() async throws {
        let processor = try ExecProcessor(command: "sleep 60")
        let input = try ProcessorSupport.input()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await ProcessorSupport.error(processor, input)
        }
        #expect(await task.value == .cancelled)
        #expect(processor.childPIDs.isEmpty)
    }

    @Test func shutdownKillsRunningChildren() async throws {
        let processor = try ExecProcessor(command: "sleep 60")
        let input = try ProcessorSupport.input()
        let tasks = (0..<3).map { _ in Task { await ProcessorSupport.error(processor, input) } }
        #expect(await ProcessorSupport.eventually { processor.childPIDs.count == 3 })
        let pids = processor.childPIDs
        await processor.shutdown()
        for task in tasks { #expect(await task.value == .cancelled) }
        for pid in pids { #expect(!ProcessorSupport.exists(pid)) }
        #expect(await ProcessorSupport.error(processor, input) == .cancelled)
    }

    @Test func aStderrFloodKeepsOnlyTheTail() async throws {
        let command = "cat >/dev/null; head -c 10000000 /dev/zero | tr '\\0' 'x' >&2; printf '\\nTHE END' >&2; exit 2"
        let error = await ProcessorSupport.error(try ExecProcessor(command: command), try ProcessorSupport.input())
        guard case let .exited(status, tail) = error else {
            Issue.record("expected exited, got \(String(describing: error))")
            return
        }
        #expect(status == 2)
        #expect(tail.utf8.count <= 4096)
        #expect(tail.utf8.count > 4000)
        #expect(tail.hasSuffix("x\nTHE END"))
    }

    @Test func outputOverTheLimitIsBadOutputAndTheChildIsKilled() async throws {
        let input = try ProcessorSupport.input(rows: 1000)
        let capped = await ProcessorSupport.error(try ExecProcessor(command: "cat", maxOutputBytes: 1000), input)
        guard case let .badOutput(message, _) = capped else {
            Issue.record("expected badOutput, got \(String(describing: capped))")
            return
        }
        #expect(message.contains("more than 1000 bytes"))
        // An endless writer is stopped too, not read forever.
        let start = ContinuousClock.now
        let endless = await ProcessorSupport.error(try ExecProcessor(command: "yes", maxOutputBytes: 1 << 20), input)
        guard case .badOutput = endless else {
            Issue.record("expected badOutput, got \(String(describing: endless))")
            return
        }
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func anUnlimitedOutputLimitWorks() async throws {
        let input = try ProcessorSupport.input(rows: 100)
        #expect(try await ExecProcessor(command: "cat", maxOutputBytes: .max).process(input).rows == 100)
    }

    @Test func anEmptyCommandIsRefused() {
        #expect(throws: ProcessorError.spawnFailed("the command is empty")) { try ExecProcessor(command: "  ") }
    }

    @Test func theChildInheritsOnlyItsStandardDescriptors() async throws {
        // A descriptor of this process without FD_CLOEXEC must not reach the child either.
        let stray = open("/dev/null", O_RDONLY)
        defer { close(stray) }
        #expect(stray > 2)
        let error = await ProcessorSupport.error(try ExecProcessor(command: Self.listDescriptors),
                                                 try ProcessorSupport.input())
        #expect(error == .exited(status: 5, stderrTail: "0 1 2"))
    }

    /// Prints the shell's open descriptors below 1024 on stderr (with `test -e`, which opens none), exits 5.
    static let listDescriptors = "n=0; while [ $n -lt 1024 ]; do [ -e /proc/$$/fd/$n ] && printf '%s ' $n >&2; "
        + "n=$((n+1)); done; exit 5"

    @Test func noDescriptorsOrChildrenLeak() async throws {
        let processor = try ExecProcessor(command: "cat")
        let input = try ProcessorSupport.input()
        _ = try await processor.process(input)
        let before = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        for _ in 0..<40 { _ = try await processor.process(input) }
        for _ in 0..<10 { _ = await ProcessorSupport.error(try ExecProcessor(command: "exit 1"), input) }
        let after = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        // A leak would add 4 descriptors per run (200 here); other suites running meanwhile open a few.
        #expect(after < before + 60, "descriptors: \(before) before, \(after) after")
        #expect(processor.childPIDs.isEmpty)
    }
}

@Suite struct ProcessorOutputDecodingTests {
    @Test func decodesAValidStreamIntoSlices() throws {
        let input = try ProcessorSupport.input(rows: 10, batches: 3)
        let bytes = ProcessorSupport.streamBytes(input)
        let output = try ProcessorOutput.decoding(stream: bytes)
        #expect(output.rows == 30)
        #expect(output.messages.count == 4)
        #expect(ProcessorSupport.streamBytes(output) == bytes)
        // Without the end-of-stream marker too.
        #expect(try ProcessorOutput.decoding(stream: Array(bytes.dropLast(8))).rows == 30)
    }

    @Test func streamSegmentsCutPaddedBodiesToTheirLength() throws {
        // DoPut accepts a body longer than its header's bodyLength; the stream must not carry the extra bytes.
        let input = try ProcessorSupport.input(rows: 10, batches: 2)
        let padded = input.messages.map { message in
            message.body.isEmpty ? message : StoredMessage(header: message.header, body: (Array(message.body) + [UInt8](repeating: 0, count: 16))[...])
        }
        let stream = ProcessorInput(key: input.key, attempt: 1, schema: input.schema, messages: padded).streamSegments.flatMap { $0 }
        #expect(stream == ProcessorSupport.streamBytes(input))
        #expect(try ProcessorOutput.decoding(stream: stream).rows == 20)
    }

    @Test func rejectsEveryTruncation() throws {
        let input = try ProcessorSupport.input(rows: 3)
        let bytes = ProcessorSupport.streamBytes(input)
        var accepted: [Int] = []
        for length in 0..<(bytes.count - 8) {
            if (try? ProcessorOutput.decoding(stream: Array(bytes.prefix(length)))) != nil { accepted.append(length) }
        }
        // A stream may end without its marker (the IPC format allows closing instead), so a cut right after a
        // whole message decodes; every other cut is rejected. Here: right after the schema message.
        let schemaEnd = EncodedMessage.frame(header: input.messages[0].header).count
        #expect(accepted == [schemaEnd])
    }

    @Test func rejectsAStreamWithoutSchema() {
        #expect(throws: ProcessorError.badOutput("the stream has no schema message (it ends at once)", stderrTail: "")) {
            try ProcessorOutput.decoding(stream: [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
        }
    }

    @Test func rejectsInvalidData() throws {
        // A utf8 column whose bytes are not UTF-8: full validation, as for untrusted input.
        let schema = Schema([Field("name", .utf8)])
        var writer = IPCWriter(schema: schema, format: .stream)
        try writer.write(RecordBatch(schema: schema, columns: [.binary([[0xC3, 0x28]], type: .utf8)]))
        writer.finish()
        #expect(throws: ProcessorError.self) { try ProcessorOutput.decoding(stream: writer.bytes()) }
    }
}
