import Synchronization

/// A byte budget shared across threads: a charge succeeds only while the total stays within `limit`.
///
/// Used for receive sides (a connection's and a whole server's buffered bytes) and send sides (a connection's
/// queued bytes), by GRPCWire and RESP alike.
package final class ByteBudget: Sendable {
    /// Most bytes that may be charged at once.
    package let limit: Int
    private let used = Atomic<Int>(0)

    /// A budget of `limit` bytes (negative: 0).
    package init(limit: Int) { self.limit = max(0, limit) }

    /// Charges `bytes` unless that would pass the limit; returns whether it was charged.
    package func tryCharge(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        var current = self.used.load(ordering: .relaxed)
        while true {
            let (next, overflow) = current.addingReportingOverflow(bytes)
            if overflow || next > self.limit { return false }
            let (exchanged, original) = self.used.weakCompareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Charges `bytes` unconditionally; returns the new total.
    @discardableResult
    package func charge(_ bytes: Int) -> Int {
        guard bytes > 0 else { return self.used.load(ordering: .relaxed) }
        return self.used.wrappingAdd(bytes, ordering: .relaxed).newValue
    }

    /// Returns `bytes` charged earlier.
    package func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        self.used.wrappingSubtract(bytes, ordering: .relaxed)
    }

    /// Bytes charged now.
    package var inUse: Int { self.used.load(ordering: .relaxed) }
}
