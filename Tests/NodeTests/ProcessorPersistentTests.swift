import ArrowIPC
import Foundation
import Glibc
import Node
import Testing

/// `--exec-persistent`: one long-lived Python child per slot, through examples/python/valkeyflight_processor.py.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProcessorPersistentTests {
    /// A Python processor whose behaviour depends on the batch id: `crash…` exits hard, `fail…` raises,
    /// `slow…` sleeps, `noisy…` prints; anything else is double_price.py.
    static let scriptPath: String = {
        let path = ProcessorSupport.temporaryFile("persistent.py")
        let script = """
            import os, sys, tempfile, time
            sys.path.insert(0, \(Self.pythonString(ProcessorSupport.examples.path)))
            from valkeyflight_processor import run
            import double_price

            def process(table, context):
                if context.id.startswith("crash"):
                    sys.stderr.write("crashing on " + context.key + "\\n")
                    sys.stderr.flush()
                    os._exit(3)
                if context.id.startswith("fail"):
                    raise ValueError("refusing " + context.id)
                if context.id.startswith("slow"):
                    open(os.path.join(tempfile.gettempdir(), "vf-persistent-" + context.id), "w").close()
                    time.sleep(60)
                if context.id.startswith("noisy"):
                    print("a print() line that must not reach stdout")
                return double_price.process(table, context)

            run(process)
            """
        _ = FileManager.default.createFile(atPath: path, contents: Data(script.utf8))
        // One script per test process, removed when it exits.
        atexit { _ = unlink(ProcessorPersistentTests.scriptPath) }
        return path
    }()

    static func pythonString(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func processor() throws -> ExecProcessor {
        try ExecProcessor(command: "\(ProcessorSupport.shellQuote(ProcessorSupport.python)) \(ProcessorSupport.shellQuote(Self.scriptPath))",
                          persistent: true)
    }

    /// Checks double_price.py's result in Swift: prices doubled, source = key, attempt column.
    static func checkDoubled(_ output: ProcessorOutput, of input: ProcessorInput, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var reader = try IPCStreamReader(ProcessorSupport.streamBytes(output), options: .untrusted)
        var original = try IPCStreamReader(ProcessorSupport.streamBytes(input), options: .untrusted)
        var expected: [Double?] = []
        while let batch = try original.next() {
            expected += Array(try #require(batch.column(named: "price")).values(as: Double.self)).map { $0.map { $0 * 2 } }
        }
        var prices: [Double?] = []
        var sources: [String?] = []
        var attempts: [Int32?] = []
        while let batch = try reader.next() {
            prices += Array(try #require(batch.column(named: "price")).values(as: Double.self))
            sources += try #require(batch.column(named: "source")).strings()
            attempts += Array(try #require(batch.column(named: "attempt")).values(as: Int32.self))
        }
        #expect(prices == expected, sourceLocation: sourceLocation)
        #expect(sources == Array(repeating: input.key.description, count: expected.count), sourceLocation: sourceLocation)
        #expect(attempts == Array(repeating: Int32(input.attempt), count: expected.count), sourceLocation: sourceLocation)
    }

    @Test func manyBatchesGoThroughOneChild() async throws {
        let processor = try Self.processor()
        var pids: Set<Int32> = []
        for index in 0..<40 {
            let input = try ProcessorSupport.input(rows: 1 + index * 7, id: "batch-\(index)", attempt: 1 + index % 3,
                                                   batches: 1 + index % 2)
            let output = try await processor.process(input)
            try Self.checkDoubled(output, of: input)
            pids.formUnion(processor.childPIDs)
        }
        #expect(pids.count == 1)
        // pyarrow's own view of one result equals its computation too.
        let input = try ProcessorSupport.input(rows: 30, id: "final", attempt: 2)
        #expect(try await ProcessorSupport.checkAgainstPyArrow(input: input, output: try await processor.process(input)) == "equal")
        await processor.shutdown()
        for pid in pids { #expect(!ProcessorSupport.exists(pid)) }
    }

    @Test func aChildThatCrashesIsReplacedForTheNextBatch() async throws {
        let processor = try Self.processor()
        let first = try ProcessorSupport.input(id: "one")
        try Self.checkDoubled(try await processor.process(first), of: first)
        let crashed = try #require(processor.childPIDs.first)
        let error = await ProcessorSupport.error(processor, try ProcessorSupport.input(id: "crash-1"))
        #expect(error == .exited(status: 3, stderrTail: "crashing on q/crash-1"))
        #expect(!ProcessorSupport.exists(crashed))
        let next = try ProcessorSupport.input(id: "three", attempt: 2)
        try Self.checkDoubled(try await processor.process(next), of: next)
        let replacement = try #require(processor.childPIDs.first)
        #expect(replacement != crashed)
        await processor.shutdown()
    }

    @Test func anExceptionFailsTheBatchAndTheChildGoesOn() async throws {
        let processor = try Self.processor()
        let first = try ProcessorSupport.input(id: "fine")
        try Self.checkDoubled(try await processor.process(first), of: first)
        let pid = processor.childPIDs
        #expect(await ProcessorSupport.error(processor, try ProcessorSupport.input(id: "fail-7")) == .failed("ValueError: refusing fail-7"))
        let noisy = try ProcessorSupport.input(id: "noisy")
        try Self.checkDoubled(try await processor.process(noisy), of: noisy)
        #expect(processor.childPIDs == pid)
        await processor.shutdown()
    }

    @Test func aCancelledBatchKillsItsChildAndTheNextGetsANewOne() async throws {
        let processor = try Self.processor()
        let warm = try ProcessorSupport.input(id: "warm")
        try Self.checkDoubled(try await processor.process(warm), of: warm)
        let pid = try #require(processor.childPIDs.first)
        let id = "slow-\(UInt32.random(in: 0...UInt32.max))"
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("vf-persistent-\(id)").path
        defer { unlink(marker) }
        let slow = try ProcessorSupport.input(id: id)
        let task = Task { await ProcessorSupport.error(processor, slow) }
        // Cancel once the child is inside process() (it made its marker file).
        #expect(await ProcessorSupport.eventually { access(marker, F_OK) == 0 })
        let start = ContinuousClock.now
        task.cancel()
        #expect(await task.value == .cancelled)
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(!ProcessorSupport.exists(pid))
        let after = try ProcessorSupport.input(id: "after")
        try Self.checkDoubled(try await processor.process(after), of: after)
        #expect(processor.childPIDs.first != pid)
        await processor.shutdown()
    }

    @Test func anIdleChildKilledFromOutsideIsReplaced() async throws {
        let processor = try Self.processor()
        let first = try ProcessorSupport.input(id: "first")
        try Self.checkDoubled(try await processor.process(first), of: first)
        let pid = try #require(processor.childPIDs.first)
        kill(pid, SIGKILL)
        #expect(await ProcessorSupport.eventually { !ProcessorSupport.exists(pid) })
        let second = try ProcessorSupport.input(id: "second")
        try Self.checkDoubled(try await processor.process(second), of: second)
        #expect(processor.childPIDs.count == 1)
        #expect(processor.childPIDs.first != pid)
        await processor.shutdown()
    }

    @Test func concurrentCallersGetOneChildEachAndShutdownKillsThemAll() async throws {
        let processor = try Self.processor()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<6 {
                group.addTask {
                    let input = try ProcessorSupport.input(rows: 10, id: "c\(index)")
                    try Self.checkDoubled(try await processor.process(input), of: input)
                }
            }
            try await group.waitForAll()
        }
        let pids = processor.childPIDs
        #expect((1...6).contains(pids.count))
        await processor.shutdown()
        for pid in pids { #expect(!ProcessorSupport.exists(pid)) }
        #expect(processor.childPIDs.isEmpty)
        #expect(await ProcessorSupport.error(processor, try ProcessorSupport.input()) == .cancelled)
    }

    @Test(arguments: [
        ("echoes its input", "cat", "not \"VFR1\""),
        ("one-shot style output", "cat >/dev/null & printf 'garbage that is long enough'; wait", "not \"VFR1\""),
        ("closes stdout", "exec >&-; cat >/dev/null", "closed stdout"),
        ("huge answer", "printf 'VFR1\\0\\0\\0\\0\\377\\377\\377\\377\\377\\377\\377\\177'; cat >/dev/null", "more than the limit"),
        ("unknown status", "printf 'VFR1\\7\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0'; cat >/dev/null", "unknown answer status 7"),
    ])
    func aChildThatBreaksTheFramingFailsTheBatch(name: String, command: String, expected: String) async throws {
        let processor = try ExecProcessor(command: command, persistent: true)
        let error = await ProcessorSupport.error(processor, try ProcessorSupport.input(rows: 50))
        guard case let .badOutput(message, _) = error else {
            Issue.record("\(name): expected badOutput, got \(String(describing: error))")
            return
        }
        #expect(message.contains(expected), "\(name): \(message)")
        #expect(processor.childPIDs.isEmpty, "\(name): the broken child is gone")
    }

    @Test func aChildThatExitsCleanlyBeforeAnsweringFailsTheBatch() async throws {
        let error = await ProcessorSupport.error(try ExecProcessor(command: "head -c 10 >/dev/null", persistent: true),
                                                 try ProcessorSupport.input())
        guard case .badOutput = error else {
            Issue.record("expected badOutput, got \(String(describing: error))")
            return
        }
    }
}
