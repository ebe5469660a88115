import ArrowIPC
import Foundation
import Node
import Synchronization
import Testing

/// The client side of large transfers (issue 13): `submit` maps its file and `get -o` writes the file while the
/// batch arrives, under a temporary name renamed into place only when the whole batch arrived.
@Suite struct FlightTransferTests {
    static func temporaryPath(_ name: String) -> String {
        NSTemporaryDirectory() + "vf-transfer-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
    }

    /// Names beside `path` that start with its name: the target itself and any temporary file of a `get -o`.
    static func namesBeside(_ path: String) -> [String] {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(name) }
    }

    @Test func submitOfAMappedFileAndGetToAFileRoundTripEveryValue() async throws {
        // Several record batches, so `get -o` writes the file in several steps.
        let schema = Schema([Field("id", .int(.int64)), Field("price", .floatingPoint(.double))])
        var writer = IPCWriter(schema: schema, format: .stream)
        for part in 0..<5 {
            let ids = (0..<Int64(20_000)).map { Optional($0 + Int64(part) * 20_000) }
            try writer.write(try RecordBatch(schema: schema, columns: [
                .primitive(ids), .primitive(ids.map { $0.map { Double($0) * 0.25 } }),
            ]))
        }
        writer.finish()
        let input = Self.temporaryPath("in.arrows")
        let output = Self.temporaryPath("out.arrows")
        defer {
            unlink(input)
            unlink(output)
        }
        #expect(FileManager.default.createFile(atPath: input, contents: Data(writer.bytes())))
        try await InProcessNode.with(NodeConfiguration(mode: .flight)) { node in
            let submit = try await CLI.run(["submit", input, "--server", node.location, "--queue", "big", "--id", "one"])
            #expect(submit.status == 0, "\(submit.stderr)")
            #expect(submit.text.hasPrefix("big/one  rows=100000"), "\(submit.text)")
            let get = try await CLI.run(["get", "big/one", "--server", node.location, "-o", output])
            #expect(get.status == 0, "\(get.stderr)")
            #expect(get.text.hasPrefix("big/one -> \(output)  record_batches=5  rows=100000  bytes="), "\(get.text)")
        }
        // What we submitted is what we got back, batch by batch.
        var reader = try IPCStreamReader([UInt8](try Data(contentsOf: URL(fileURLWithPath: output))), options: .untrusted)
        var ids: [Int64?] = []
        var prices: [Double?] = []
        while let batch = try reader.next() {
            ids += try batch.columns[0].values(as: Int64.self)
            prices += try batch.columns[1].values(as: Double.self)
        }
        #expect(ids == (0..<Int64(100_000)).map { Optional($0) })
        #expect(prices == (0..<100_000).map { Optional(Double($0) * 0.25) })
        #expect(Self.namesBeside(output) == [(output as NSString).lastPathComponent], "no temporary file is left beside the output")
    }

    @Test func failedGetLeavesAnExistingFileAsItWasAndNoTemporaryFile() async throws {
        let output = Self.temporaryPath("kept.arrows")
        defer { unlink(output) }
        let before = Data("an older file".utf8)
        #expect(FileManager.default.createFile(atPath: output, contents: before))
        try await InProcessNode.with(NodeConfiguration(mode: .flight)) { node in
            let get = try await CLI.run(["get", "none/missing", "--server", node.location, "-o", output])
            #expect(get.status != 0)
            #expect(get.stderr.contains("none/missing"), "\(get.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == before)
        #expect(Self.namesBeside(output) == [(output as NSString).lastPathComponent], "the temporary file of a failed get is removed")
    }

    /// A target that is not a regular file (a FIFO here; `/dev/null` alike) is written in place, never replaced by a
    /// renamed temporary file.
    @Test func getIntoAFIFOWritesThroughIt() async throws {
        let fifo = Self.temporaryPath("pipe")
        defer { unlink(fifo) }
        #expect(mkfifo(fifo, 0o600) == 0)
        let stream = try PipelineData.stream(rows: 300)
        let received = ReceivedBytes()
        let reader = Thread {
            let fd = open(fifo, O_RDONLY)
            var buffer = [UInt8](repeating: 0, count: 65536)
            while fd >= 0 {
                let n = read(fd, &buffer, buffer.count)
                if n <= 0 { break }
                received.append(buffer[0..<n])
            }
            if fd >= 0 { close(fd) }
            received.finish()
        }
        reader.start()
        try await InProcessNode.with(NodeConfiguration(mode: .flight)) { node in
            _ = try await node.submit(stream, queue: "fifo", id: "one")
            let get = try await CLI.run(["get", "fifo/one", "--server", node.location, "-o", fifo])
            #expect(get.status == 0, "\(get.stderr)")
        }
        #expect(await received.wait(), "the reader saw the end of the stream")
        var info = stat()
        #expect(stat(fifo, &info) == 0 && info.st_mode & S_IFMT == S_IFIFO, "the FIFO is still a FIFO")
        var batches = try IPCStreamReader(received.bytes, options: .untrusted)
        var rows = 0
        while let batch = try batches.next() { rows += batch.length }
        #expect(rows == 300)
    }
}

/// Bytes a reader thread collected, and whether it saw the end (waited for without blocking the pool).
final class ReceivedBytes: Sendable {
    private let state = Mutex((bytes: [UInt8](), done: false))

    func append(_ bytes: ArraySlice<UInt8>) { self.state.withLock { $0.bytes += bytes } }
    func finish() { self.state.withLock { $0.done = true } }
    var bytes: [UInt8] { self.state.withLock { $0.bytes } }

    /// Polls for the end, at most 30 s.
    func wait() async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while ContinuousClock.now < deadline {
            if self.state.withLock({ $0.done }) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return self.state.withLock { $0.done }
    }
}
