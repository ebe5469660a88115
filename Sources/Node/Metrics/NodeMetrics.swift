internal import FlightRPC
internal import GRPCWire
import Synchronization

/// Batch metrics of one queue: wait and processing histograms, attempts by outcome.
package final class QueueMetrics: Sendable {
    /// The `outcome` label values of `valkeyflight_batch_attempts_total`, in order.
    package static let outcomes = ["completed", "retry", "failed", "lease_lost", "cancelled"]

    /// `valkeyflight_batch_wait_seconds`: since the batch became pending, at each claim.
    package let wait = MetricHistogram()
    /// `valkeyflight_batch_processing_seconds`: since the claim, at each attempt's end.
    package let processing = MetricHistogram()
    private let attempts: InlineArray<5, Atomic<UInt64>> = InlineArray { _ in Atomic(0) }

    /// Metrics at zero.
    package init() {}

    /// Counts one attempt that ended with `outcome` (one of ``outcomes``; anything else is not counted).
    package func attemptEnded(_ outcome: String) {
        guard let index = Self.outcomes.firstIndex(of: outcome) else { return }
        self.attempts[index].wrappingAdd(1, ordering: .relaxed)
    }

    /// Attempts that ended with `outcome` so far (0 for an unknown outcome).
    package func attempts(_ outcome: String) -> UInt64 {
        guard let index = Self.outcomes.firstIndex(of: outcome) else { return 0 }
        return self.attempts[index].load(ordering: .relaxed)
    }
}

/// Flight metrics of one RPC method: calls per gRPC code and a latency histogram.
package final class RPCMethodMetrics: Sendable {
    private let codes: InlineArray<17, Atomic<UInt64>> = InlineArray { _ in Atomic(0) }
    /// `valkeyflight_flight_rpc_seconds` of this method.
    package let seconds = MetricHistogram()

    /// Metrics at zero.
    package init() {}

    /// Counts one call that ended with gRPC status `code` (0 ... 16) after `duration`.
    package func record(code: Int, duration: Duration) {
        let index = code
        if index >= 0 && index < 17 { self.codes[index].wrappingAdd(1, ordering: .relaxed) }
        self.seconds.observe(duration)
    }

    /// Calls that ended with gRPC status `code` so far.
    package func calls(code: Int) -> UInt64 { code >= 0 && code < 17 ? self.codes[code].load(ordering: .relaxed) : 0 }
}

/// Every metric of one node process (the ValkeyFlight contract §4). Label sets are registered up front — Flight
/// methods from a fixed table, queues from the worker configuration — so recording looks up an immutable
/// dictionary and touches atomics only. A queue first seen later (no worker claims it here) is registered once
/// under a lock.
package final class NodeMetrics: Sendable {
    /// The `method` label values: every Flight RPC.
    package static let methods = ["Handshake", "ListFlights", "GetFlightInfo", "PollFlightInfo", "GetSchema", "DoGet",
                                  "DoPut", "DoExchange", "DoAction", "ListActions"]

    private let rpcs: [String: RPCMethodMetrics]
    private let queues: [String: QueueMetrics]
    private let lateQueues = Mutex<[String: QueueMetrics]>([:])
    private let busy = Atomic<Int>(0)

    /// Registers the Flight methods and `queues` (the worker's `--queue`).
    package init(queues: [String] = []) {
        var rpcs: [String: RPCMethodMetrics] = [:]
        for method in Self.methods { rpcs[method] = RPCMethodMetrics() }
        self.rpcs = rpcs
        var byQueue: [String: QueueMetrics] = [:]
        for queue in queues { byQueue[queue] = QueueMetrics() }
        self.queues = byQueue
    }

    /// The metrics of Flight method `method` (nil for a name outside ``methods``).
    package func rpc(_ method: String) -> RPCMethodMetrics? { self.rpcs[method] }

    /// The metrics of `queue` (registered on first use when it was not configured).
    package func queue(_ queue: String) -> QueueMetrics {
        if let metrics = self.queues[queue] { return metrics }
        return self.lateQueues.withLock { late in
            if let metrics = late[queue] { return metrics }
            let metrics = QueueMetrics()
            late[queue] = metrics
            return metrics
        }
    }

    /// Every queue with metrics, sorted.
    package var queueMetrics: [(String, QueueMetrics)] {
        let late = self.lateQueues.withLock { $0 }
        return self.queues.merging(late) { a, _ in a }.sorted { $0.key < $1.key }
    }

    /// `valkeyflight_worker_busy`: slots processing a batch now.
    /// A slot started a batch.
    package func workerStarted() { self.busy.wrappingAdd(1, ordering: .relaxed) }
    /// A slot finished its batch.
    package func workerFinished() { self.busy.wrappingSubtract(1, ordering: .relaxed) }
    /// Slots processing a batch now.
    package var workersBusy: Int { self.busy.load(ordering: .relaxed) }
}

/// Records every Flight call into ``NodeMetrics`` and, at debug level, logs one line per call.
struct FlightCallMetrics: FlightCallObserver {
    let metrics: NodeMetrics
    let log: NodeLogger

    func callEnded(_ record: FlightCallRecord) {
        self.metrics.rpc(record.method)?.record(code: record.code.rawValue, duration: record.duration)
        guard self.log.level <= .debug else { return }
        self.log.debug("rpc", ["method": record.method, "peer": record.peer, "status": "\(record.code)",
                               "received_bytes": String(record.receivedBytes), "sent_bytes": String(record.sentBytes),
                               "duration": NodeLogger.milliseconds(record.duration)])
    }
}
