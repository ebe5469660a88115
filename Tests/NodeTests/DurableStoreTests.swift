import ArrowIPC
import Foundation
import Node
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory for one test, removed afterwards.
func withDataDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = NSTemporaryDirectory() + "vf-data-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try await body(directory)
}

/// `--data-dir` at the store: files before visibility, memory released, the index rebuilt at start (torn and
/// corrupt files skipped), `--max-disk`, TTL and delete removing files, names that cannot be files refused,
/// and pyarrow reading the files.
@Suite struct DurableStoreTests {
    static let schema = Schema([Field("id", .int(.int64)), Field("price", .floatingPoint(.double))])

    /// The messages of an IPC stream as a DoPut would hand them to the store (header and body slices).
    static func messages(_ stream: [UInt8]) throws -> [StoredMessage] {
        var iterator = try IPCMessageIterator(stream)
        var messages: [StoredMessage] = []
        while let message = try iterator.next() {
            messages.append(StoredMessage(header: message.metadata, body: message.body.bytes))
        }
        return messages
    }

    /// Stores an IPC stream of `rows` rows under `key` the way a DoPut does (reserve, grow, store).
    @discardableResult
    static func put(_ store: BatchStore, _ key: String, rows: Int, offset: Double = 0,
                    replacing: Bool = false) async throws -> (batch: StoredBatch, stream: [UInt8]) {
        let stream = try PipelineData.stream(rows: rows, offset: offset)
        let messages = try Self.messages(stream)
        let reservation = try store.reserve(try BatchKey(parsing: key), replacing: replacing)
        for message in messages { try store.grow(reservation, by: message.heldBytes) }
        let batch = try await store.store(reservation, schema: Self.schema, messages: messages, rows: rows)
        return (batch, stream)
    }

    /// A stored batch reframed as an IPC stream (what DoGet's messages amount to).
    static func stream(of batch: StoredBatch) -> [UInt8] {
        var bytes: [UInt8] = []
        for message in batch.messages {
            bytes += EncodedMessage.frame(header: message.header)
            bytes += message.body
        }
        return bytes + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
    }

    static func file(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    /// Every file name below `directory` (relative paths).
    static func names(_ directory: String) -> [String] {
        ((try? FileManager.default.subpathsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    @Test func aStoredBatchIsItsFileAndHoldsNoMemory() async throws {
        try await withDataDirectory { directory in
            let store = BatchStore(maxMemory: 1 << 30, spill: try SpillDirectory(path: directory))
            let (batch, stream) = try await Self.put(store, "q/a", rows: 5000)
            let path = directory + "/q/a.arrows"
            // The file is exactly the IPC stream put, and the stored batch is byte for byte the same.
            #expect(Self.file(path) == stream)
            #expect(Self.stream(of: try #require(store.get(try BatchKey(parsing: "q/a")))) == stream)
            #expect(batch.fileBytes == stream.count)
            // Served from the mapping: nothing of it is charged to --max-memory, the file to the disk.
            #expect(store.usage.storedBytes == 0 && store.usage.reservedBytes == 0, "\(store.usage)")
            #expect(store.diskUsage.fileBytes == stream.count && store.diskUsage.reservedBytes == 0)
            #expect(Self.names(directory) == ["q", "q/a.arrows"], "no temporary file stays behind")
            // A result lands beside its input, in a directory named after the id.
            try await Self.put(store, "q/a/result", rows: 10, replacing: true)
            #expect(Self.names(directory) == ["q", "q/a", "q/a.arrows", "q/a/result.arrows"])
        }
    }

    @Test func aReplacedResultReplacesItsFile() async throws {
        try await withDataDirectory { directory in
            let store = BatchStore(spill: try SpillDirectory(path: directory, fsync: .never))
            try await Self.put(store, "q/a/result", rows: 100, offset: 1, replacing: true)
            let (_, second) = try await Self.put(store, "q/a/result", rows: 20, offset: 2, replacing: true)
            #expect(Self.file(directory + "/q/a/result.arrows") == second)
            #expect(store.diskUsage.fileBytes == second.count)
            #expect(try PipelineData.prices(Self.stream(of: try #require(store.get(try BatchKey(parsing: "q/a/result")))))
                    == PipelineData.prices(second))
        }
    }

    @Test func restartRebuildsTheIndexAndSkipsTornAndCorruptFiles() async throws {
        try await withDataDirectory { directory in
            var streams: [String: [UInt8]] = [:]
            do {
                let store = BatchStore(spill: try SpillDirectory(path: directory))
                for (key, rows) in [("q/a", 100), ("q/b", 3000), ("r/c", 1)] {
                    streams[key] = try await Self.put(store, key, rows: rows).stream
                }
                streams["q/a/result"] = try await Self.put(store, "q/a/result", rows: 7, replacing: true).stream
            }
            let good = try #require(Self.file(directory + "/q/b.arrows"))
            // A write cut short by a crash (its temporary file), a truncated file, one with a flipped header byte,
            // and one whose end-of-stream marker came too early.
            #expect(FileManager.default.createFile(atPath: directory + "/q/.d.arrows.tmp-1-1", contents: Data(good.prefix(500))))
            #expect(FileManager.default.createFile(atPath: directory + "/q/torn.arrows", contents: Data(good.prefix(good.count / 2))))
            var flipped = good
            flipped[8] ^= 0xFF  // the Message flatbuffer's root offset
            #expect(FileManager.default.createFile(atPath: directory + "/q/flipped.arrows", contents: Data(flipped)))
            #expect(FileManager.default.createFile(atPath: directory + "/q/short.arrows",
                                                   contents: Data(Array(good.prefix(64)) + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])))

            let restarted = BatchStore(spill: try SpillDirectory(path: directory))
            let report = await restarted.loadSpilled()
            #expect(report.loaded == 4 && report.corrupted == 3 && report.temporaryRemoved == 1, "\(report)")
            for (key, stream) in streams {
                let batch = try #require(restarted.get(try BatchKey(parsing: key)), "\(key) not served after restart")
                #expect(try PipelineData.prices(Self.stream(of: batch)) == PipelineData.prices(stream), "\(key)")
                #expect(batch.fileBytes == stream.count)
            }
            for name in ["torn", "flipped", "short"] {
                let key = try BatchKey(parsing: "q/\(name)")
                #expect(restarted.get(key) == nil)
                #expect(restarted.corruption(of: key)?.contains("corrupted") == true, "\(name)")
                #expect(FileManager.default.fileExists(atPath: directory + "/q/\(name).arrows.corrupt"))
            }
            #expect(!Self.names(directory).contains { $0.contains(".tmp-") }, "the temporary file was removed")
            #expect(restarted.usage.storedBytes == 0)
            #expect(restarted.diskUsage.fileBytes == streams.values.reduce(0) { $0 + $1.count })
            // A restart after that one sees the same batches and no corrupt files any more (they were renamed).
            let again = BatchStore(spill: try SpillDirectory(path: directory))
            let second = await again.loadSpilled()
            #expect(second.loaded == 4 && second.corrupted == 0 && second.temporaryRemoved == 0, "\(second)")
        }
    }

    @Test func maxDiskRefusesAndLeavesNothingBehind() async throws {
        try await withDataDirectory { directory in
            let store = BatchStore(spill: try SpillDirectory(path: directory, maxDisk: 4096))
            await #expect(throws: NodeError.self) { try await Self.put(store, "q/big", rows: 10_000) }
            do {
                try await Self.put(store, "q/big", rows: 10_000)
            } catch let error as NodeError {
                guard case let .resourceExhausted(message) = error else {
                    Issue.record("expected RESOURCE_EXHAUSTED, got \(error)")
                    return
                }
                #expect(message.contains("--max-disk"), "\(message)")
            }
            #expect(store.get(try BatchKey(parsing: "q/big")) == nil)
            #expect(store.list().isEmpty && store.usage.reservedBytes == 0 && store.diskUsage == (0, 0))
            #expect(Self.names(directory).isEmpty, "nothing half stored: \(Self.names(directory))")
            // What fits is stored; the key that was refused is free.
            let (small, _) = try await Self.put(store, "q/big", rows: 10)
            #expect(small.fileBytes <= 4096 && store.diskUsage.fileBytes == small.fileBytes)
        }
    }

    /// An IPC stream of `count` record batches of `rows` rows each (schema as `PipelineData.stream`).
    static func multiBatchStream(count: Int, rows: Int) throws -> [UInt8] {
        var writer = IPCWriter(schema: Self.schema, format: .stream)
        for index in 0..<count {
            try writer.write(try RecordBatch(schema: Self.schema, columns: [
                .primitive((0..<Int64(rows)).map { Optional($0 + Int64(index * rows)) }),
                .primitive((0..<rows).map { Optional(Double($0) * 0.5 + Double(index)) }),
            ]))
        }
        writer.finish()
        return writer.bytes()
    }

    /// Waits (bounded) until `condition` holds; false if it never did within 10 s.
    static func eventually(_ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    @Test func messagesAppendedWhileReceivingMakeTheSameFile() async throws {
        try await withDataDirectory { directory in
            let store = BatchStore(spill: try SpillDirectory(path: directory))
            let stream = try Self.multiBatchStream(count: 5, rows: 1000)
            let messages = try Self.messages(stream)
            let reservation = try store.reserve(try BatchKey(parsing: "q/a"))
            for message in messages {
                try store.grow(reservation, by: message.heldBytes)
                try store.append(reservation, message)
            }
            let batch = try await store.store(reservation, schema: Self.schema, messages: messages, rows: 5000)
            #expect(Self.file(directory + "/q/a.arrows") == stream)
            #expect(Self.stream(of: batch) == stream)
            #expect(store.usage.storedBytes == 0 && store.diskUsage.fileBytes == stream.count)
            #expect(Self.names(directory) == ["q", "q/a.arrows"])
        }
    }

    @Test func maxDiskReachedWhileReceivingLeavesNothingBehind() async throws {
        try await withDataDirectory { directory in
            let stream = try Self.multiBatchStream(count: 4, rows: 1000)
            let messages = try Self.messages(stream)
            // Room for the schema and two record batches, not for the third.
            let limit = messages.prefix(3).reduce(0) { $0 + 8 + $1.header.count + $1.body.count } + 8
            let store = BatchStore(spill: try SpillDirectory(path: directory, maxDisk: limit))
            let reservation = try store.reserve(try BatchKey(parsing: "q/a"))
            var refused: NodeError?
            for message in messages {
                try store.grow(reservation, by: message.heldBytes)
                do {
                    try store.append(reservation, message)
                } catch let error as NodeError {
                    refused = error
                    break
                }
            }
            guard case let .resourceExhausted(message)? = refused else {
                Issue.record("expected RESOURCE_EXHAUSTED at the fourth message, got \(String(describing: refused))")
                return
            }
            #expect(message.contains("--max-disk"))
            store.cancel(reservation)
            #expect(store.get(try BatchKey(parsing: "q/a")) == nil && store.diskUsage == (0, 0))
            // The temporary file is removed on the writer's queue once its queued writes are done.
            #expect(try await Self.eventually { !Self.names(directory).contains { $0.contains(".tmp-") } },
                    "\(Self.names(directory))")
            #expect(!Self.names(directory).contains { $0.hasSuffix(".arrows") })
        }
    }

    @Test func ttlAndDeleteRemoveTheFiles() async throws {
        try await withDataDirectory { directory in
            let clock = TestClock()
            let store = BatchStore(ttl: .seconds(10), spill: try SpillDirectory(path: directory), clock: clock.now)
            try await Self.put(store, "q/a", rows: 10)
            try await Self.put(store, "q/b", rows: 10)
            try await Self.put(store, "q/b/result", rows: 10, replacing: true)
            #expect(Self.names(directory) == ["q", "q/a.arrows", "q/b", "q/b.arrows", "q/b/result.arrows"])
            #expect(store.delete(try BatchKey(parsing: "q/a")))
            #expect(Self.names(directory) == ["q", "q/b", "q/b.arrows", "q/b/result.arrows"])
            clock.advance(.seconds(11))
            #expect(store.sweep() == 2)
            #expect(Self.names(directory) == ["q"], "expired files and the result's directory are removed")
            #expect(store.diskUsage.fileBytes == 0)
        }
    }

    @Test(arguments: ["../x", "x/..", "./x", "x/.", ".valkey/x", "x/.hidden", "x/y.arrows", "x/y.arrows.tmp-1"])
    func keysThatCannotBeFileNamesAreRefused(key: String) async throws {
        try await withDataDirectory { directory in
            let parsed = try BatchKey(parsing: key)
            let durable = BatchStore(spill: try SpillDirectory(path: directory))
            #expect(throws: NodeError.self) { _ = try durable.reserve(parsed) }
            // In memory they are ordinary keys.
            #expect(throws: Never.self) { _ = try BatchStore().reserve(parsed) }
            #expect(Self.names(directory).isEmpty)
        }
    }

    @Test func pyarrowReadsTheSpilledFilesEqualToWhatWasPut() async throws {
        try await withDataDirectory { directory in
            try await FlightServerProcess.with(["--data-dir", directory]) { server in
                let script = PyArrow.fixtures.appendingPathComponent("Flight/pyarrow_durable.py").path
                let child = try TestChildProcess(PyArrow.python, [script, "put-and-read", server.url, directory],
                                                 environment: ["PYTHONDONTWRITEBYTECODE": "1"])
                child.closeInput()
                defer { child.terminate() }
                #expect(await child.waitForExit(within: 120), "pyarrow_durable.py did not finish")
                #expect(child.exitStatus == 0, "stderr: \(child.stderr)")
                #expect(try PyJSON.lastLine(of: child.stdout)["checked"] == 3)
            }
        }
    }
}
