internal import Node
internal import FlightRPC
internal import ArgumentParser

/// `valkeyflight queue …`: a queue's layout in Valkey (how many sub-queues it is spread over).
struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Show or change how a queue is spread over Valkey slots (its shard count).",
        discussion: """
            A queue with K shards is K sub-queues Q#0…Q#K-1, each its own Valkey slot (on a Valkey Cluster, \
            spread over the primaries), so one hot queue is not bound to one Valkey shard. Batch keys stay \
            QUEUE/ID; a batch's sub-queue is CRC16(ID) mod K. The count is stored in Valkey with the queue \
            (vf:{QUEUE}:config); every node and worker reads it again within 2 s. Changing it strands nothing: \
            batches already registered stay where they are and keep being claimed, counted and found.
            """,
        subcommands: [QueueConfigureCommand.self, QueueShowCommand.self]
    )
}

/// `valkeyflight queue configure Q --shards K`.
struct QueueConfigureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "configure",
        abstract: "Set a queue's shard count (DoAction configure-queue on a node with a coordinator).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The queue.")
    var queue: String

    @Option(help: "Sub-queues new batches are spread over, 1…\(Coordinator.maxShards) (1: the plain queue).")
    var shards: Int?

    func run() async throws {
        try BatchKey.check(self.queue, "queue")
        guard let shards = try Environment.resolve(self.shards, "SHARDS") else {
            throw NodeError.invalidArgument("queue configure needs --shards K (1 to \(Coordinator.maxShards))")
        }
        guard (1...Coordinator.maxShards).contains(shards) else {
            throw NodeError.invalidArgument("--shards must be 1 to \(Coordinator.maxShards), got \(shards)")
        }
        let client = try await self.client.connect()
        defer { client.close() }
        let body = "{\"queue\":\(JSONText.quote(self.queue)),\"shards\":\(shards)}"
        for json in try await runAction(client, "configure-queue", body, what: "queue configure \(self.queue)") {
            print(self.client.json ? json : layoutLine(json))
        }
    }
}

/// `valkeyflight queue show Q…`.
struct QueueShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show queues' shard counts and sub-queues (DoAction queue-config).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "Queues.")
    var queues: [String]

    func run() async throws {
        guard !self.queues.isEmpty else { throw NodeError.invalidArgument("queue show needs at least one queue") }
        for queue in self.queues { try BatchKey.check(queue, "queue") }
        let client = try await self.client.connect()
        defer { client.close() }
        for queue in self.queues {
            for json in try await runAction(client, "queue-config", queue, what: "queue show \(queue)") {
                print(self.client.json ? json : layoutLine(json))
            }
        }
    }
}

/// `Q  shards=K  history=1,4  sub-queues=Q#0,…  slots=…` from a layout object.
func layoutLine(_ json: String) -> String {
    guard let value = JSONValue.parse(json), let queue = value["queue"]?.text else { return json }
    func list(_ name: String) -> String {
        guard case let .array(items)? = value[name] else { return "?" }
        return items.compactMap(\.text).joined(separator: ",")
    }
    return "\(queue)  shards=\(value["shards"]?.text ?? "?")  history=\(list("history"))  sub-queues=\(list("sub_queues"))"
        + "  slots=\(list("slots"))"
}
