public import GRPCWire
internal import Synchronization

/// Checks a store's `--max-memory` against every request message's announced size before GRPCWire buffers
/// it: a message that would not fit beside what is stored, reserved and already being received is refused with
/// RESOURCE_EXHAUSTED at its 5-byte prefix, so a refused upload costs nothing.
public final class FlightMemoryAdmission: GRPCMessageAdmission {
    /// The store whose `maxMemory` is enforced.
    public let store: BatchStore
    /// Bytes of admitted messages GRPCWire is receiving or holding for their handlers.
    private let inFlight = Atomic<Int>(0)

    /// Admits messages against `store.maxMemory` (everything, when it is unlimited).
    public init(store: BatchStore) {
        self.store = store
    }

    /// Bytes of admitted messages not yet taken by their handlers.
    public var inFlightBytes: Int { self.inFlight.load(ordering: .relaxed) }

    /// Nil when stored + reserved + in-flight + `length` fits `maxMemory` (the message is then in flight until
    /// released); RESOURCE_EXHAUSTED otherwise.
    public func admit(path: String, metadata: GRPCMetadata, length: Int) -> GRPCStatus? {
        let limit = self.store.maxMemory
        guard limit != .max else { return nil }
        let usage = self.store.usage
        let (base, overflow) = usage.storedBytes.addingReportingOverflow(usage.reservedBytes)
        var current = self.inFlight.load(ordering: .relaxed)
        while true {
            let (held, o1) = base.addingReportingOverflow(current)
            let (total, o2) = held.addingReportingOverflow(length)
            if overflow || o1 || o2 || total > limit {
                return GRPCStatus(
                    .resourceExhausted,
                    "a request message of \(length) bytes would exceed the memory limit of \(limit) bytes "
                        + "(\(overflow || o1 ? limit : held) bytes held)")
            }
            let (exchanged, original) = self.inFlight.weakCompareExchange(
                expected: current, desired: current + length, ordering: .relaxed)
            if exchanged { return nil }
            current = original
        }
    }

    /// The message left GRPCWire (taken by its handler, which charges the store itself, or dropped).
    public func release(path: String, length: Int) {
        guard self.store.maxMemory != .max else { return }
        self.inFlight.wrappingSubtract(length, ordering: .relaxed)
    }
}
