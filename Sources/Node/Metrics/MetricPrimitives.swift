import Synchronization

/// A monotonically increasing count, recorded with one relaxed atomic add (no lock, no allocation).
package final class MetricCounter: Sendable {
    private let value = Atomic<UInt64>(0)

    /// A counter at zero.
    package init() {}

    /// Adds `amount` (wrapping; a UInt64 does not wrap in practice).
    package func add(_ amount: UInt64 = 1) { self.value.wrappingAdd(amount, ordering: .relaxed) }

    /// The count now.
    package var current: UInt64 { self.value.load(ordering: .relaxed) }
}

/// A histogram of durations with fixed buckets (Prometheus' `le` bounds, in seconds), preallocated: recording is
/// a scan of the bounds and two relaxed atomic adds (no lock, no allocation).
package final class MetricHistogram: Sendable {
    /// Upper bounds in seconds; the last bucket is +Inf.
    package static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                           5, 10, 30, 60, 300]
    /// Bound i in nanoseconds (the comparison on the hot path is integer).
    private static let boundNanoseconds: [Int64] = bounds.map { Int64($0 * 1e9) }
    private let buckets: InlineArray<18, Atomic<UInt64>> = InlineArray { _ in Atomic(0) }
    private let sumNanoseconds = Atomic<UInt64>(0)

    /// A histogram with every bucket at zero.
    package init() {}

    /// Counts one observation of `duration` (negative durations count as zero).
    package func observe(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = max(0, seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue + attoseconds / 1_000_000_000)
        var index = Self.boundNanoseconds.count
        for i in 0..<Self.boundNanoseconds.count where nanoseconds <= Self.boundNanoseconds[i] {
            index = i
            break
        }
        self.buckets[index].wrappingAdd(1, ordering: .relaxed)
        self.sumNanoseconds.wrappingAdd(UInt64(nanoseconds), ordering: .relaxed)
    }

    /// Cumulative counts per bound (the last is +Inf and equals the total count) and the sum in seconds.
    package var snapshot: (cumulative: [UInt64], sum: Double) {
        var running: UInt64 = 0
        var cumulative: [UInt64] = []
        cumulative.reserveCapacity(Self.bounds.count + 1)
        for i in 0...Self.bounds.count {
            running &+= self.buckets[i].load(ordering: .relaxed)
            cumulative.append(running)
        }
        return (cumulative, Double(self.sumNanoseconds.load(ordering: .relaxed)) / 1e9)
    }

    /// Observations so far.
    package var count: UInt64 { self.snapshot.cumulative.last ?? 0 }
}

/// Commands sent to Valkey and the ones that failed (connection errors, server errors), per connection handle.
package final class ValkeyCommandCounters: Sendable {
    /// Commands sent (`valkeyflight_valkey_commands_total`).
    package let commands = MetricCounter()
    /// Commands that failed (`valkeyflight_valkey_errors_total`).
    package let errors = MetricCounter()

    /// Counters at zero.
    package init() {}

    /// Counts `count` commands around `body`, and `count` errors when it throws.
    @inline(__always)
    package func count<T>(_ count: Int = 1, _ body: () async throws -> T) async throws -> T {
        self.commands.add(UInt64(max(0, count)))
        do {
            return try await body()
        } catch {
            self.errors.add(UInt64(max(0, count)))
            throw error
        }
    }
}
