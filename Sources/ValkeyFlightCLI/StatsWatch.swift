internal import Node
internal import FlightRPC
internal import ArgumentParser
internal import Glibc

/// Batches per queue and status at one moment, from the `stats` action of a node with a coordinator.
struct StatsSample {
    static let states = ["pending", "processing", "retry_wait", "completed", "failed", "cancelled"]

    /// Queue → state → count, in the server's order.
    let queues: [(queue: String, counts: [String: Int])]
    /// The action's JSON as received.
    let json: String
    let taken: ContinuousClock.Instant
    /// Seconds since the Unix epoch when it was taken.
    let unixTime: Double

    /// Fetches one sample.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` when the node has no coordinator (a plain Flight store).
    static func fetch(_ client: FlightClient) async throws -> StatsSample {
        guard let json = try await runAction(client, "stats", "", what: "stats").first else {
            throw NodeError.invalidArgument("stats: the server returned no result")
        }
        guard let sample = StatsSample(json: json) else {
            throw NodeError.invalidArgument("the node has no coordinator (start it with --valkey): no queue states to watch")
        }
        return sample
    }

    /// Parses the `stats` action's JSON; nil unless it is queue → state counts (a plain store answers otherwise).
    init?(json: String) {
        guard let value = JSONValue.parse(json), case let .object(members) = value,
            members.allSatisfy({ $0.1["pending"] != nil })
        else { return nil }
        self.queues = members.map { queue, counts in
            (queue, Dictionary(uniqueKeysWithValues: Self.states.map { ($0, Int(counts[$0]?.text ?? "0") ?? 0) }))
        }
        self.json = json
        self.taken = .now
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        self.unixTime = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// Batches per second that reached `state` since `previous` (0 without one; never negative, since retention
    /// removes finished batches).
    func rate(_ state: String, queue: String, since previous: StatsSample?) -> Double {
        guard let previous, let before = previous.queues.first(where: { $0.queue == queue })?.counts[state],
            let now = self.queues.first(where: { $0.queue == queue })?.counts[state]
        else { return 0 }
        let seconds = Double((self.taken - previous.taken).components.attoseconds) / 1e18
            + Double((self.taken - previous.taken).components.seconds)
        return seconds > 0 ? Double(max(0, now - before)) / seconds : 0
    }

    /// The table: one row per queue, one column per state, plus completed and failed per second.
    func table(since previous: StatsSample?) -> [String] {
        guard !self.queues.isEmpty else { return ["no queues"] }
        let width = max(5, self.queues.map(\.queue.count).max() ?? 0)
        func pad(_ text: String, _ count: Int) -> String { text + String(repeating: " ", count: max(0, count - text.count)) }
        var lines = [pad("QUEUE", width) + "  " + Self.states.map { pad($0.uppercased(), 11) }.joined(separator: " ")
            + (previous == nil ? "" : " COMPLETED/S FAILED/S")]
        for (queue, counts) in self.queues {
            var line = pad(queue, width) + "  " + Self.states.map { pad(String(counts[$0] ?? 0), 11) }.joined(separator: " ")
            if previous != nil {
                line += " " + pad(Self.format(self.rate("completed", queue: queue, since: previous)), 11)
                line += " " + Self.format(self.rate("failed", queue: queue, since: previous))
            }
            lines.append(line)
        }
        return lines
    }

    /// One JSON line for `stats --watch --json`: time, the counts, and rates since the previous sample.
    func jsonLine(since previous: StatsSample?) -> String {
        let rates = self.queues.map { queue, _ in
            "\(JSONText.quote(queue)):{\"completed_per_second\":\(Self.format(self.rate("completed", queue: queue, since: previous))),"
                + "\"failed_per_second\":\(Self.format(self.rate("failed", queue: queue, since: previous)))}"
        }
        return "{\"time\":\(Self.format(self.unixTime, decimals: 3)),\"queues\":\(self.json),\"rates\":{\(rates.joined(separator: ","))}}"
    }

    static func format(_ value: Double, decimals: Int = 1) -> String {
        let scale = decimals == 3 ? 1000.0 : 10.0
        let scaled = (value * scale).rounded()
        let whole = Int(scaled / scale)
        let fraction = Int(abs(scaled.truncatingRemainder(dividingBy: scale)))
        let digits = String(fraction)
        return "\(whole).\(String(repeating: "0", count: max(0, decimals - digits.count)) + digits)"
    }
}

/// Options shared by `stats --watch` and `top`.
struct WatchOptions: ParsableArguments {
    @Option(help: "Time between samples (DURATION). (default: 1s)")
    var interval: DurationOption?

    @Option(help: "Stop after this many samples. (default: until interrupted)")
    var count: Int?

    func resolved() throws -> (interval: Duration, count: Int?) {
        let interval = try Environment.resolve(self.interval, "INTERVAL", default: DurationOption(argument: "1s")!).duration
        guard interval > .zero else { throw NodeError.invalidArgument("--interval must be above 0") }
        let count = try Environment.resolve(self.count, "COUNT")
        if let count, count < 1 { throw NodeError.invalidArgument("--count must be at least 1") }
        return (interval, count)
    }

    /// Calls `show` with each sample and the one before, `count` times (or until interrupted).
    func run(_ client: FlightClient, _ show: (StatsSample, StatsSample?) -> Void) async throws {
        let (interval, count) = try self.resolved()
        var previous: StatsSample?
        var taken = 0
        while count.map({ taken < $0 }) ?? true {
            let sample = try await StatsSample.fetch(client)
            show(sample, previous)
            previous = sample
            taken += 1
            if count.map({ taken >= $0 }) ?? false { break }
            try await Task.sleep(until: sample.taken.advanced(by: interval), clock: .continuous)
        }
    }
}

struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live view of queues: batches per status and completed/failed per second, refreshed in place.",
        discussion: "Needs a terminal (for scripts: stats --watch [--json]). Quit with Ctrl-C.")

    @OptionGroup var client: ClientOptions
    @OptionGroup var watch: WatchOptions

    func run() async throws {
        guard isatty(STDOUT_FILENO) == 1 else {
            throw NodeError.invalidArgument("top needs a terminal; use 'valkeyflight stats --watch' in scripts")
        }
        let server = try Environment.resolve(self.client.server, "SERVER", default: "grpc://127.0.0.1:8815")
        let client = try await self.client.connect()
        defer { client.close() }
        try await self.watch.run(client) { sample, previous in
            // Home, clear to the end of the screen, then the frame.
            var frame = "\u{1B}[H\u{1B}[2J"
            frame += "valkeyflight top — \(server) — every \(self.watch.interval?.description ?? "1s") (Ctrl-C quits)\n\n"
            frame += sample.table(since: previous).joined(separator: "\n") + "\n"
            print(frame, terminator: "")
            fflush(nil)
        }
    }
}
