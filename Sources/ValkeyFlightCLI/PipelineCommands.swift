internal import Node
internal import FlightRPC
internal import ArgumentParser
internal import FlightProto
internal import Glibc
internal import GRPCWire

/// Runs one management action and returns its Results as UTF-8 texts.
func runAction(_ client: FlightClient, _ type: String, _ body: String, what: String) async throws -> [String] {
    do {
        return try await client.doAction(FlightAction(type: type, body: Array(body.utf8)[...])).map { String(decoding: $0.value, as: UTF8.self) }
    } catch {
        throw ClientErrors.describe(error, what)
    }
}

/// One status object's text line: `KEY  completed  attempts=1/3  worker=…  result=…  error=…`.
func statusLine(_ json: String) -> String {
    guard let value = JSONValue.parse(json), let key = value["key"]?.text else { return json }
    var line = "\(key)  \(value["status"]?.text ?? "?")  attempts=\(value["attempts"]?.text ?? "?")/\(value["max_attempts"]?.text ?? "?")"
    if let worker = value["worker"]?.text { line += "  worker=\(worker)" }
    if let result = value["result_key"]?.text { line += "  result=\(result)" }
    if let updated = value["updated_at"]?.text { line += "  updated=\(updated)" }
    if let error = value["last_error"]?.text { line += "  error=\(error)" }
    return line
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a batch's status (DoAction status).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "Batch keys, QUEUE/ID.")
    var keys: [String]

    func run() async throws {
        guard !self.keys.isEmpty else { throw NodeError.invalidArgument("status needs at least one batch key") }
        let keys = try self.keys.map { try BatchKey(parsing: $0) }
        let client = try await self.client.connect()
        defer { client.close() }
        for key in keys {
            for json in try await runAction(client, "status", key.description, what: "status \(key)") {
                print(self.client.json ? json : statusLine(json))
            }
        }
    }
}

struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until batches are finished (completed, failed or cancelled).",
        discussion: "Exit 0 when every batch completed, 1 when any failed or was cancelled, 3 on --timeout.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "Batch keys, QUEUE/ID.")
    var keys: [String]

    @Option(help: "Give up after DURATION (seconds, or 100ms, 5m, …). (default: no limit)")
    var timeout: DurationOption?

    func run() async throws {
        guard !self.keys.isEmpty else { throw NodeError.invalidArgument("wait needs at least one batch key") }
        let keys = try self.keys.map { try BatchKey(parsing: $0) }
        let timeout = try Environment.resolve(self.timeout, "TIMEOUT")?.duration
        let client = try await self.client.connect()
        defer { client.close() }
        try await BatchWaiting(client: client, json: self.client.json).wait(keys, timeout: timeout)
    }
}

/// Waits for batches through the `status` action, showing progress on a terminal.
struct BatchWaiting {
    let client: FlightClient
    let json: Bool

    func wait(_ keys: [BatchKey], timeout: Duration?) async throws {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        let terminal = isatty(STDERR_FILENO) == 1 && keys.count > 1
        var finished: [BatchKey: (state: String, json: String)] = [:]
        var pause = Duration.milliseconds(5)
        while finished.count < keys.count {
            for key in keys where finished[key] == nil {
                guard let json = try await runAction(self.client, "status", key.description, what: "wait \(key)").first,
                      let value = JSONValue.parse(json), let state = value["status"]?.text
                else { continue }
                if ["completed", "failed", "cancelled"].contains(state) { finished[key] = (state, json) }
            }
            if terminal {
                let completed = finished.values.filter { $0.state == "completed" }.count
                ProcessIO.write(STDERR_FILENO, "\r\(finished.count)/\(keys.count) finished (\(completed) completed, "
                    + "\(finished.count - completed) failed or cancelled)   ")
            }
            if finished.count == keys.count { break }
            if let deadline, ContinuousClock.now + pause > deadline {
                if terminal { ProcessIO.write(STDERR_FILENO, "\n") }
                for key in keys { if let done = finished[key] { print(self.json ? done.json : statusLine(done.json)) } }
                let waiting = keys.filter { finished[$0] == nil }.map(\.description)
                throw ExitCodeError(code: 3, message: "timed out waiting for \(waiting.count) batch(es): \(waiting.prefix(5).joined(separator: ", "))")
            }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
        if terminal { ProcessIO.write(STDERR_FILENO, "\n") }
        for key in keys { if let done = finished[key] { print(self.json ? done.json : statusLine(done.json)) } }
        let bad = keys.filter { finished[$0]?.state != "completed" }
        if !bad.isEmpty {
            throw ExitCodeError(code: 1, message: "\(bad.count) of \(keys.count) batch(es) did not complete: "
                + bad.prefix(5).map { "\($0) (\(finished[$0]?.state ?? "?"))" }.joined(separator: ", "))
        }
    }
}

/// An error with its own exit code (printed as the usual one-line error).
struct ExitCodeError: Error, CustomStringConvertible {
    let code: Int32
    let message: String
    var description: String { self.message }
}

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry", abstract: "Make a failed or cancelled batch pending again, attempts reset.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "Batch keys, QUEUE/ID.")
    var keys: [String]

    func run() async throws {
        try await manage("retry", self.keys, self.client)
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a pending, waiting or processing batch.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "Batch keys, QUEUE/ID.")
    var keys: [String]

    func run() async throws {
        try await manage("cancel", self.keys, self.client)
    }
}

/// Runs a per-key management action and prints each resulting status.
func manage(_ action: String, _ keys: [String], _ options: ClientOptions) async throws {
    guard !keys.isEmpty else { throw NodeError.invalidArgument("\(action) needs at least one batch key") }
    let parsed = try keys.map { try BatchKey(parsing: $0) }
    let client = try await options.connect()
    defer { client.close() }
    for key in parsed {
        for json in try await runAction(client, action, key.description, what: "\(action) \(key)") {
            print(options.json ? json : statusLine(json))
        }
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Batches per queue and status.",
        discussion: "With --watch: a sample every --interval (with completed/failed per second), one JSON object per line under --json.")

    @OptionGroup var client: ClientOptions

    @Flag(name: .customLong("watch"), help: "Print a sample every --interval until interrupted (or --count samples).")
    var watchFlag = false
    /// The flag, or `VALKEYFLIGHT_WATCH` set to 1/true/yes.
    var watching: Bool { self.watchFlag || Environment.flag("WATCH") }

    @OptionGroup var watch: WatchOptions

    func run() async throws {
        let client = try await self.client.connect()
        defer { client.close() }
        if self.watching {
            let json = self.client.json
            return try await self.watch.run(client) { sample, previous in
                print(json ? sample.jsonLine(since: previous) : sample.table(since: previous).joined(separator: "\n") + "\n")
                fflush(nil)
            }
        }
        guard let json = try await runAction(client, "stats", "", what: "stats").first else {
            throw NodeError.invalidArgument("stats: the server returned no result")
        }
        if self.client.json { return print(json) }
        // A plain store's stats are not queue states: shown as they are.
        guard let sample = StatsSample(json: json) else { return print(json) }
        print(sample.table(since: nil).joined(separator: "\n"))
    }
}
