import RESP

/// How one queue's batches are spread over Valkey slots: its shard count now, and every shard count it ever had
/// (so batches registered under an earlier count are still found and drained).
///
/// Shard count 1 is the plain queue, keys `vf:{Q}:…`; K > 1 is K sub-queues `vf:{Q#0}:…` to `vf:{Q#K-1}:…`,
/// each in its own slot. A new batch goes to sub-queue CRC16(ID) mod K — so its key `Q/ID` alone names its
/// sub-queue, and ids the server makes spread evenly. Stored in `vf:{Q}:config` (hash: `shards`, `history`,
/// `updated_at`), written by `Coordinator.configureShards`.
public struct QueueLayout: Sendable, Equatable {
    /// The queue.
    public let queue: String
    /// Sub-queues new batches are spread over (1: the plain queue).
    public let shards: Int
    /// Every shard count the queue has had, ascending, `shards` included (at most `Coordinator.maxShards`
    /// entries).
    public let history: [Int]

    /// A layout; `history` is cleaned up (bounded to 1…maxShards, sorted, duplicates dropped, `shards` added).
    public init(queue: String, shards: Int, history: [Int] = []) {
        let shards = min(max(shards, 1), Coordinator.maxShards)
        self.queue = queue
        self.shards = shards
        self.history = Set(history.filter { (1...Coordinator.maxShards).contains($0) } + [shards]).sorted()
    }

    /// The keys of the sub-queue a new batch `id` is registered in.
    func keys(forNew id: String) -> QueueKeys { Self.keys(self.queue, id, shards: self.shards) }

    /// The key sets that may hold batch `id`: the current one first, then those of earlier shard counts.
    func candidates(_ id: String) -> [QueueKeys] {
        var out = [self.keys(forNew: id)]
        for count in self.history where count != self.shards {
            let keys = Self.keys(self.queue, id, shards: count)
            if !out.contains(where: { $0.prefix == keys.prefix }) { out.append(keys) }
        }
        return out
    }

    /// Every key set that may hold batches of the queue: the plain queue when 1 is in the history, and
    /// `Q#0 … Q#(M−1)` for the largest count M > 1 ever used. Workers claim from all of them, housekeeping
    /// sweeps all of them, stats and lists add them up — so changing the shard count strands nothing.
    var drain: [QueueKeys] {
        var out: [QueueKeys] = []
        if self.history.contains(1) { out.append(QueueKeys(self.queue)) }
        if let largest = self.history.last, largest > 1 {
            out += (0..<largest).map { QueueKeys(shard: self.queue, $0) }
        }
        return out
    }

    /// `{"queue":"Q","shards":K,"history":[…],"sub_queues":["Q#0",…],"slots":[…]}` (sub_queues: the hash tags
    /// of `drain`; slots: the Valkey Cluster slot of each).
    public var json: String {
        let tags = self.drain.map { String($0.prefix.dropFirst(4).dropLast(2)) }
        return "{\"queue\":\(JSONText.quote(self.queue)),\"shards\":\(self.shards),"
            + "\"history\":[\(self.history.map(String.init).joined(separator: ","))],"
            + "\"sub_queues\":[\(tags.map(JSONText.quote).joined(separator: ","))],"
            + "\"slots\":[\(tags.map { String(HashSlot.slot(for: $0)) }.joined(separator: ","))]}"
    }

    private static func keys(_ queue: String, _ id: String, shards: Int) -> QueueKeys {
        shards <= 1 ? QueueKeys(queue) : QueueKeys(shard: queue, Int(HashSlot.crc16(id.utf8)) % shards)
    }

    /// A shard count written as text (a config field, an action body, an option): 1…`Coordinator.maxShards`, else
    /// nil. At most 8 digits are parsed.
    public static func shardCount(_ text: some StringProtocol) -> Int? {
        guard text.utf8.count <= 8, let count = Int(text), (1...Coordinator.maxShards).contains(count) else { return nil }
        return count
    }

    /// The layout from the fields of `vf:{Q}:config`, nil when it has no valid `shards`.
    init?(queue: String, shardsField: String?, historyField: String?) {
        guard let text = shardsField, let shards = Self.shardCount(text) else { return nil }
        var history: [Int] = []
        if let list = historyField, list.utf8.count <= 8 * Coordinator.maxShards {
            history = list.split(separator: ",").prefix(Coordinator.maxShards).compactMap { Self.shardCount($0) }
        }
        self.init(queue: queue, shards: shards, history: history)
    }
}
