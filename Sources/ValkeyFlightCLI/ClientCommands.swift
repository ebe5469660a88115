internal import Node
internal import FlightRPC
internal import ArgumentParser
internal import ArrowIPC
internal import FlightProto
internal import Glibc
internal import GRPCWire
internal import Synchronization

/// Options of every client command: which node to talk to and how.
struct ClientOptions: ParsableArguments {
    @Option(help: "The node, grpc://HOST:PORT or grpc+tls://HOST:PORT. (default: grpc://127.0.0.1:8815)")
    var server: String?

    @Option(help: "PEM file of the CA that signed the server's certificate (grpc+tls). (default: the system trust store)")
    var tlsCa: String?

    @Option(help: "Authenticate with USER:PASS (Handshake) before the command.")
    var authBasic: String?

    @Flag(name: .customLong("json"), help: "Print JSON for scripts instead of text.")
    var jsonFlag = false
    /// The flag, or `VALKEYFLIGHT_JSON` set to 1/true/yes.
    var json: Bool { self.jsonFlag || Environment.flag("JSON") }

    func connect() async throws -> FlightClient {
        let server = try Environment.resolve(self.server, "SERVER", default: "grpc://127.0.0.1:8815")
        let client = try FlightClient(location: try FlightLocation(parsing: server),
                                      trustRoots: try Environment.resolve(self.tlsCa, "TLS_CA"))
        if let credentials = try Environment.resolve(self.authBasic, "AUTH_BASIC") {
            let (username, password) = try FlightBasicAuth.split(credentials)
            try await client.authenticateBasic(username: username, password: password)
        }
        return client
    }
}

/// Shows transfer progress on stderr when it is a terminal and the transfer takes more than a second.
final class TransferProgress: Sendable {
    private let start = ContinuousClock.now
    private let label: String
    private let enabled = isatty(STDERR_FILENO) == 1
    private let shown = Mutex((ContinuousClock.Instant?.none, false))

    init(_ label: String) {
        self.label = label
    }

    func update(_ bytes: Int) {
        guard self.enabled else { return }
        let now = ContinuousClock.now
        let elapsed = now - self.start
        guard elapsed > .seconds(1) else { return }
        let due = self.shown.withLock { state in
            if let last = state.0, now - last < .milliseconds(250) { return false }
            state = (now, true)
            return true
        }
        guard due else { return }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let mib = Double(bytes) / 1_048_576
        ProcessIO.write(STDERR_FILENO, "\r\(self.label): \(Int(mib)) MiB, \(Int(mib / seconds)) MiB/s   ")
    }

    func finish() {
        if self.shown.withLock({ $0.1 }) { ProcessIO.write(STDERR_FILENO, "\n") }
    }
}

/// Maps a gRPC failure to the one-line CLI error.
enum ClientErrors {
    static func describe(_ error: any Error, _ action: String) -> NodeError {
        if var status = error as? GRPCStatus {
            // Keep the server's first line; drop the traceback some servers (pyarrow's) append.
            var message = status.message.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            if let detail = message.firstRange(of: ". Detail: Python exception") { message = String(message[..<detail.lowerBound]) }
            status.message = message
            switch status.code {
            case .notFound: return .notFound("\(action): \(status.message)")
            case .alreadyExists: return .alreadyExists("\(action): \(status.message)")
            case .resourceExhausted: return .resourceExhausted("\(action): \(status.message)")
            default: return .invalidArgument("\(action): \(status.code): \(status.message)")
            }
        }
        if let error = error as? NodeError { return error }
        return .invalidArgument("\(action): \(error)")
    }
}

struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Store Arrow IPC streams or files on a node (DoPut); prints each batch key.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "Arrow IPC streams or files ('-' for standard input).")
    var files: [String]

    @Option(help: "Queue name. (default: default)")
    var queue: String?

    @Option(help: "Batch id (one file only); the server makes one when omitted.")
    var id: String?

    @Option(help: "Re-encode the batches with body compression lz4 or zstd before sending. (default: send as is)")
    var compression: BodyCompressionChoice?

    @Flag(name: .customLong("wait"), help: "Wait until every submitted batch is finished (exit 1 if any did not complete).")
    var waitFlag = false
    /// The flag, or `VALKEYFLIGHT_WAIT` set to 1/true/yes.
    var wait: Bool { self.waitFlag || Environment.flag("WAIT") }

    @Option(help: "With --wait: give up after DURATION.")
    var timeout: DurationOption?

    func run() async throws {
        let queue = try Environment.resolve(self.queue, "QUEUE", default: "default")
        let compression = try Environment.resolve(self.compression, "COMPRESSION")
        guard !self.files.isEmpty else { throw NodeError.invalidArgument("submit needs at least one file") }
        guard self.id == nil || self.files.count == 1 else {
            throw NodeError.invalidArgument("--id names one batch: give one file")
        }
        // Check the names before sending anything.
        _ = try BatchKey(queue: queue, id: self.id ?? "x")
        let client = try await self.client.connect()
        defer { client.close() }
        var keys: [BatchKey] = []
        for file in self.files {
            // A regular file is mapped, not read: no zero-filled copy of it (docs/BENCHMARKS.md, "Flight profile").
            var bytes = try ArrowInput.load(file)
            if let codec = compression?.codec {
                let (summary, batches) = try IPCSummary.read(Array(bytes))
                var writer = IPCWriter(schema: summary.schema, format: .stream, options: IPCWriteOptions(compression: codec))
                for batch in batches { try writer.write(batch) }
                writer.finish()
                bytes = writer.bytes()[...]
            }
            let progress = TransferProgress("sending \(file)")
            let path = self.id.map { [queue, $0] } ?? [queue]
            let results: [PutResult]
            do {
                results = try await client.put(FlightDescriptor(path: path), ipc: bytes) { progress.update($0) }
            } catch {
                progress.finish()
                throw ClientErrors.describe(error, "submit \(file)")
            }
            progress.finish()
            guard let result = results.last else { throw NodeError.invalidArgument("submit \(file): the server sent no PutResult") }
            let text = String(decoding: result.value, as: UTF8.self)
            if let key = JSONValue.parse(text)?["key"]?.text { keys.append(try BatchKey(parsing: key)) }
            if !self.wait || !self.client.json {
                print(self.client.json ? text : PutResultSummary(json: text).line)
            }
        }
        if self.wait {
            let timeout = try Environment.resolve(self.timeout, "TIMEOUT")?.duration
            try await BatchWaiting(client: client, json: self.client.json).wait(keys, timeout: timeout)
        }
    }
}

/// The text line for a PutResult's JSON (the JSON itself if it is not an object with a key).
struct PutResultSummary {
    let json: String

    var line: String {
        guard let value = JSONValue.parse(self.json), let key = value["key"]?.text else { return self.json }
        return "\(key)  rows=\(value["rows"]?.text ?? "?")  bytes=\(value["bytes"]?.text ?? "?")  status=\(value["status"]?.text ?? "?")"
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Fetch a batch (DoGet) and write it as an Arrow IPC stream.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The batch key, QUEUE/ID.")
    var key: String

    @Option(name: .shortAndLong, help: "Output file ('-' or omitted: standard output).")
    var output: String = "-"

    @Flag(name: .customLong("result"), help: "Fetch the batch's processing result (QUEUE/ID/result).")
    var resultFlag = false
    /// The flag, or `VALKEYFLIGHT_RESULT` set to 1/true/yes.
    var result: Bool { self.resultFlag || Environment.flag("RESULT") }

    func run() async throws {
        var key = try BatchKey(parsing: self.key)
        if self.result { key = key.resultKey }
        if self.output == "-", self.client.json {
            throw NodeError.invalidArgument("get --json needs -o FILE: standard output carries the Arrow data")
        }
        if self.output == "-", isatty(STDOUT_FILENO) == 1 {
            throw NodeError.invalidArgument("refusing to write Arrow data to a terminal: use -o FILE or a pipe")
        }
        let client = try await self.client.connect()
        defer { client.close() }
        let progress = TransferProgress("receiving \(key)")
        // A file is written while the batch arrives (each message dropped once written, so memory stays at a few
        // messages and their buffers are reused), into a temporary name renamed over FILE at the end; standard
        // output gets nothing unless the whole batch arrived.
        let sink = try OutputSink(self.output)
        var received = 0
        var (recordBatches, rows) = (0, 0)
        do {
            let reader = try await client.doGet(Ticket(Array(key.description.utf8)))
            var decoder = IPCMessageDecoder(options: .untrusted)
            while let data = try await reader.nextData() {
                guard !data.dataHeader.isEmpty else { continue }
                if case let .recordBatch(batch) = try decoder.decode(header: data.dataHeader, body: data.dataBody) {
                    recordBatches += 1
                    rows += batch.length
                }
                let framed = EncodedMessage.frame(header: data.dataHeader)
                try sink.append([framed[...], data.dataBody])
                received += framed.count + data.dataBody.count
                progress.update(received)
            }
            try sink.append([[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0][...]])
            try sink.finish()
        } catch {
            progress.finish()
            sink.abandon()
            throw ClientErrors.describe(error, "get \(key)")
        }
        progress.finish()
        let bytes = received + 8
        // Standard output carries the data itself; a file gets a summary (or, with --json, one object).
        guard self.output != "-" else { return }
        if self.client.json {
            print("{\"key\":\(JSONText.quote(key.description)),\"file\":\(JSONText.quote(self.output)),"
                + "\"record_batches\":\(recordBatches),\"rows\":\(rows),\"bytes\":\(bytes)}")
        } else {
            print("\(key) -> \(self.output)  record_batches=\(recordBatches)  rows=\(rows)  bytes=\(bytes)")
        }
    }
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List batches: status objects from a node with a coordinator (newest first), else what a Flight store holds (ListFlights).")

    @OptionGroup var client: ClientOptions

    @Option(help: "Only batches of this queue.")
    var queue: String?

    @Option(help: "Only batches in this status: pending, processing, retry_wait, completed, failed, cancelled (needs a node with a coordinator).")
    var status: String?

    @Option(help: "At most this many batches (with a coordinator). (default: 1000)")
    var limit: Int?

    func run() async throws {
        let queue = try Environment.resolve(self.queue, "QUEUE")
        if let queue { try BatchKey.check(queue, "queue") }
        let status = try Environment.resolve(self.status, "STATUS")
        let states = ["pending", "processing", "retry_wait", "completed", "failed", "cancelled"]
        if let status, !states.contains(status) {
            throw NodeError.invalidArgument("--status must be one of \(states.joined(separator: ", ")), got '\(status)'")
        }
        let limit = try Environment.resolve(self.limit, "LIMIT", default: 1000)
        guard limit > 0 else { throw NodeError.invalidArgument("--limit must be positive") }
        let client = try await self.client.connect()
        defer { client.close() }
        // A node with a coordinator lists status objects; a plain Flight store lists what it holds.
        var request = "{\"limit\":\(limit)"
        if let queue { request += ",\"queue\":\(JSONText.quote(queue))" }
        if let status { request += ",\"status\":\(JSONText.quote(status))" }
        request += "}"
        do {
            let results = try await client.doAction(FlightAction(type: "list", body: Array(request.utf8)[...]))
            let texts = results.map { String(decoding: $0.value, as: UTF8.self) }
            if self.client.json { return texts.forEach { print($0) } }
            guard !texts.isEmpty else { return print("no batches") }
            texts.forEach { print(statusLine($0)) }
            return
        } catch let error as GRPCStatus where ![.unavailable, .unauthenticated, .deadlineExceeded].contains(error.code) {
            // Not a node with a coordinator (ours answers "unknown action"; other Flight servers differ).
            guard status == nil else {
                throw NodeError.invalidArgument("list --status needs a node with a coordinator (this one is a plain Flight store)")
            }
        } catch {
            throw ClientErrors.describe(error, "list")
        }
        let infos: [FlightInfo]
        do {
            infos = try await client.listFlights(criteria: queue.map { Array("\($0)/".utf8) } ?? [])
        } catch {
            throw ClientErrors.describe(error, "list")
        }
        let rows = infos.map { info in
            (key: info.flightDescriptor?.path.joined(separator: "/") ?? "?", rows: info.totalRecords, bytes: info.totalBytes,
             location: info.endpoints.first?.locations.first?.uri ?? "")
        }
        if self.client.json {
            for row in rows {
                print("{\"key\":\(JSONText.quote(row.key)),\"rows\":\(row.rows),\"bytes\":\(row.bytes),\"location\":\(JSONText.quote(row.location))}")
            }
            return
        }
        guard !rows.isEmpty else { return print("no batches") }
        let width = max(3, rows.map(\.key.count).max() ?? 0)
        func pad(_ text: String, _ count: Int) -> String { text + String(repeating: " ", count: max(0, count - text.count)) }
        print("\(pad("KEY", width))  \(pad("ROWS", 12))  \(pad("BYTES", 14))  LOCATION")
        for row in rows {
            print("\(pad(row.key, width))  \(pad(String(row.rows), 12))  \(pad(String(row.bytes), 14))  \(row.location)")
        }
    }
}

/// Where `get` writes a batch: a file written as the messages arrive (under a temporary name in the same directory,
/// renamed over the target once complete, removed on failure), standard output written at the end, or — when
/// the target exists and is not a regular file (`/dev/null`, a FIFO) — that target written as the messages arrive.
final class OutputSink {
    private let path: String
    /// Where the bytes go until `finish` (the target itself when it is not a regular file).
    private let temporary: String
    private let renames: Bool
    private var fd: Int32 = -1
    private var held: [ArraySlice<UInt8>] = []

    /// - Throws: ``NodeError/io(operation:path:errno:)`` when the output cannot be created.
    init(_ path: String) throws(NodeError) {
        self.path = path
        var info = stat()
        let special = path != "-" && stat(path, &info) == 0 && info.st_mode & S_IFMT != S_IFREG
        self.renames = path != "-" && !special
        self.temporary = self.renames ? "\(path).tmp-\(getpid())" : path
        guard path != "-" else { return }
        self.fd = open(self.temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard self.fd >= 0 else { throw .io(operation: "create", path: self.temporary, errno: errno) }
    }

    /// Writes `segments` in order, in one `writev` (standard output: keeps them for ``finish()``).
    /// - Throws: ``NodeError/io(operation:path:errno:)`` when a write fails.
    func append(_ segments: [ArraySlice<UInt8>]) throws(NodeError) {
        guard self.fd >= 0 else {
            self.held += segments
            return
        }
        try FileIO.write(segments, fd: self.fd, path: self.temporary)
    }

    /// Completes the output: the file is closed and renamed over the target; standard output gets what was kept.
    /// - Throws: ``NodeError/io(operation:path:errno:)``.
    func finish() throws(NodeError) {
        guard self.fd >= 0 else {
            try FileIO.write(self.held, to: "-")
            self.held = []
            return
        }
        let fd = self.fd
        self.fd = -1
        guard close(fd) == 0 else { throw .io(operation: "close", path: self.temporary, errno: errno) }
        guard self.renames else { return }
        guard rename(self.temporary, self.path) == 0 else {
            let code = errno
            unlink(self.temporary)
            throw .io(operation: "rename", path: self.path, errno: code)
        }
    }

    /// Drops a failed output (the temporary file is removed; the target is left as it was).
    func abandon() {
        self.held = []
        guard self.fd >= 0 else { return }
        close(self.fd)
        self.fd = -1
        if self.renames { unlink(self.temporary) }
    }
}
