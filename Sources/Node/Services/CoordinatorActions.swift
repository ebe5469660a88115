internal import FlightProto
internal import GRPCWire

/// The management actions of a node with a coordinator (the ValkeyFlight contract (CONTRACT.md) §2): `status`, `list`, `retry`,
/// `cancel`, `delete`, `stats`, `health`, and a queue's layout: `queue-config`, `configure-queue`. Each returns JSON
/// texts, one per Flight Result.
struct CoordinatorActions: Sendable {
    let coordinator: Coordinator
    /// The node's own store (data of deleted batches is removed from it); nil on a coordinator without data.
    let store: BatchStore?

    static let actions = [
        ActionType(type: "status", description: "Body: a batch key QUEUE/ID. The batch's status object (JSON)."),
        ActionType(type: "list", description: "Body: optional JSON {\"queue\", \"status\", \"limit\"}. One status object per Result, newest first."),
        ActionType(type: "retry", description: "Body: a batch key. A failed or cancelled batch becomes pending again with its attempts reset."),
        ActionType(type: "cancel", description: "Body: a batch key. A pending, waiting or processing batch becomes cancelled."),
        ActionType(type: "delete", description: "Body: a batch key. Removes the batch's status and, on this node, its data and result."),
        ActionType(type: "stats", description: "Counts per queue and status: {\"QUEUE\": {\"pending\": n, …}, …}."),
        ActionType(type: "health", description: "Liveness and Valkey reachability: {\"status\":\"ok\", …}."),
        ActionType(type: "queue-config", description: "Body: a queue name. Its layout: {\"queue\", \"shards\", \"history\", \"sub_queues\"}."),
        ActionType(type: "configure-queue", description: "Body: JSON {\"queue\": Q, \"shards\": K}. Spreads new batches of Q over K sub-queues (1…1024); the new layout."),
    ]

    /// The most statuses one `list` returns.
    static let listLimit = 10_000

    func run(_ action: FlightAction) async throws -> [String] {
        switch action.type {
        case "status":
            let key = try self.key(action)
            guard let status = try await self.coordinator.status(key) else { throw NodeError.notFound("no batch '\(key)'") }
            return [status.json]
        case "list":
            let (queue, state, limit) = try Self.listRequest(action.body)
            return try await self.coordinator.list(queue: queue, state: state, limit: limit).map(\.json)
        case "retry":
            let key = try self.key(action)
            guard let status = try await self.coordinator.retry(key) else { throw NodeError.notFound("no batch '\(key)' to retry") }
            return [status.json]
        case "cancel":
            let key = try self.key(action)
            guard let status = try await self.coordinator.cancel(key) else { throw NodeError.notFound("no batch '\(key)' to cancel") }
            return [status.json]
        case "delete":
            let key = try self.key(action)
            let status = try await self.coordinator.delete(key)
            let local = self.store?.delete(key) ?? false
            self.store?.delete(key.resultKey)
            guard status != nil || local else { throw NodeError.notFound("no batch '\(key)' to delete") }
            return ["{\"key\":\(JSONText.quote(key.description)),\"deleted\":true}"]
        case "stats":
            return [Self.statsJSON(try await self.coordinator.stats())]
        case "health":
            let batches = self.store.map { ",\"batches\":\($0.usage.batches)" } ?? ""
            do {
                _ = try await self.coordinator.queues()
                return ["{\"status\":\"ok\",\"valkey\":\"ok\"\(batches)}"]
            } catch {
                return ["{\"status\":\"degraded\",\"valkey\":\(JSONText.quote("unreachable: \(error)"))\(batches)}"]
            }
        case "queue-config":
            guard action.body.count <= 4096 else { throw NodeError.invalidArgument("action 'queue-config' needs a queue name as its body") }
            let queue = String(decoding: action.body, as: UTF8.self)
            try BatchKey.check(queue, "queue")
            return [try await self.coordinator.readLayout(queue).json]
        case "configure-queue":
            let (queue, shards) = try Self.configureRequest(action.body)
            return [try await self.coordinator.configureShards(queue: queue, shards: shards).json]
        default:
            throw NodeError.invalidArgument("unknown action '\(BatchKey.printable(action.type))'; this node serves "
                + Self.actions.map(\.type).joined(separator: ", "))
        }
    }

    private func key(_ action: FlightAction) throws(NodeError) -> BatchKey {
        // A key is short: refuse a huge body before copying it into a string.
        guard action.body.count <= 4096 else {
            throw .invalidArgument("action '\(action.type)' needs a batch key QUEUE/ID as its body, got \(action.body.count) bytes")
        }
        let text = String(decoding: action.body, as: UTF8.self)
        do {
            return try BatchKey(parsing: text)
        } catch {
            throw .invalidArgument("action '\(action.type)' needs a batch key QUEUE/ID as its body: \(error)")
        }
    }

    /// Parses the `list` body: empty, or a JSON object with optional "queue", "status" and "limit".
    static func listRequest(_ body: ArraySlice<UInt8>) throws(NodeError) -> (String?, BatchState?, Int) {
        guard !body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) else { return (nil, nil, 1000) }
        guard body.count <= 4096, let json = JSONValue.parse(String(decoding: body, as: UTF8.self)),
              case .object = json
        else {
            throw .invalidArgument("action 'list' takes a JSON object {\"queue\", \"status\", \"limit\"} as its body")
        }
        var queue: String?
        if let value = json["queue"], value != .null {
            guard case let .string(text) = value else { throw .invalidArgument("list: \"queue\" must be a string") }
            try BatchKey.check(text, "queue")
            queue = text
        }
        var state: BatchState?
        if let value = json["status"], value != .null {
            guard case let .string(text) = value, let parsed = BatchState(rawValue: text) else {
                throw .invalidArgument("list: \"status\" must be one of "
                    + BatchState.allCases.map(\.rawValue).joined(separator: ", "))
            }
            state = parsed
        }
        var limit = 1000
        if let value = json["limit"], value != .null {
            guard case let .number(text) = value, let parsed = Int(text), parsed > 0 else {
                throw .invalidArgument("list: \"limit\" must be a positive whole number")
            }
            limit = min(parsed, Self.listLimit)
        }
        return (queue, state, limit)
    }

    /// Parses the `configure-queue` body: `{"queue": "Q", "shards": K}` with K in 1…1024.
    static func configureRequest(_ body: ArraySlice<UInt8>) throws(NodeError) -> (String, Int) {
        let usage = "action 'configure-queue' takes a JSON object {\"queue\": \"Q\", \"shards\": K} as its body"
        guard body.count <= 4096, let json = JSONValue.parse(String(decoding: body, as: UTF8.self)), case .object = json,
              case let .string(queue)? = json["queue"], case let .number(text)? = json["shards"]
        else { throw .invalidArgument(usage) }
        try BatchKey.check(queue, "queue")
        guard let shards = QueueLayout.shardCount(text) else {
            throw .invalidArgument("the shard count of a queue must be 1 to \(Coordinator.maxShards), got \(BatchKey.printable(text))")
        }
        return (queue, shards)
    }

    /// `{"QUEUE": {"pending": n, "processing": n, "retry_wait": n, "completed": n, "failed": n, "cancelled": n}, …}`.
    static func statsJSON(_ stats: [String: [BatchState: Int]]) -> String {
        let queues = stats.sorted { $0.key < $1.key }.map { queue, counts in
            let fields = BatchState.allCases.map { "\(JSONText.quote($0.rawValue)):\(counts[$0] ?? 0)" }
            return "\(JSONText.quote(queue)):{\(fields.joined(separator: ","))}"
        }
        return "{\(queues.joined(separator: ","))}"
    }
}

/// Waits for a batch to finish, reading its status with a backoff from 2 ms to 100 ms between reads.
enum BatchWaiter {
    /// - Throws: DEADLINE_EXCEEDED at `deadline`; ``NodeError/notFound(_:)`` if the batch disappears;
    ///   CancellationError when the task is cancelled.
    static func waitUntilFinished(_ key: BatchKey, coordinator: Coordinator,
                                  deadline: ContinuousClock.Instant?) async throws -> BatchStatus {
        var pause = Duration.milliseconds(2)
        while true {
            guard let status = try await coordinator.status(key) else {
                throw NodeError.notFound("batch \(key) disappeared while waiting for it (deleted or expired)")
            }
            if status.state.isFinished { return status }
            if let deadline, ContinuousClock.now + pause > deadline {
                throw GRPCStatus(.deadlineExceeded, "batch \(key) is still \(status.state.rawValue)")
            }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
    }
}
