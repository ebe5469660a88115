internal import CMalloc
import Synchronization

/// When a process gives the memory of freed received messages back to the system: ``FreedMemory/retention``
/// after the last message was received or batch removed, once per such burst (what an allocator's dirty-page
/// decay does). A pure state machine on caller-supplied times, so its rule is testable without a clock.
package struct QuietTrimPolicy: Sendable {
    /// How long the process must be quiet before freed memory goes back.
    package let retention: Duration
    private var lastChurn: ContinuousClock.Instant?

    package init(retention: Duration) {
        self.retention = retention
    }

    /// Memory was (or is about to be) received or freed at `now`.
    package mutating func noteChurn(at now: ContinuousClock.Instant) {
        self.lastChurn = now
    }

    /// Whether to trim at `now`: true once, the first time `retention` passed since the last churn.
    package mutating func shouldTrim(at now: ContinuousClock.Instant) -> Bool {
        guard let last = self.lastChurn, now - last >= self.retention else { return false }
        self.lastChurn = nil
        return true
    }
}

/// The process-wide policy for the memory of received messages (docs/BENCHMARKS.md, "Flight profile").
///
/// glibc by default serves each message of more than ~128 KiB from a fresh `mmap` and trims its heaps as soon as
/// their free top passes a threshold, so every message of a stream faults in — and the kernel zeroes — new pages:
/// a third of a receiving client's CPU and ~40% of the server's DoPut before this. ``retain()`` makes messages up
/// to 32 MiB come from glibc's arenas and stay there when freed, for the next ones to reuse; ``returnIfQuiet()``,
/// which every event loop calls on its tick, hands them back (`malloc_trim`) once ``retention`` passed with no
/// message received (``noteChurn()``, from the gRPC deframer) and no batch removed (the batch store). So resident
/// memory falls back to what is held 30 s after a burst ends.
package enum FreedMemory {
    /// Quiet time before freed memory is returned.
    package static let retention: Duration = .seconds(30)

    private static let policy = Mutex(QuietTrimPolicy(retention: FreedMemory.retention))
    /// Whether a churn is noted and not yet trimmed (read without the lock on every tick).
    private static let churned = Atomic<Bool>(false)

    /// Tunes glibc once (idempotent): 32 MiB is its largest mmap threshold (half its 64 MiB arena heaps), and a
    /// trim threshold above the heap size keeps free heap memory until `malloc_trim`.
    package static func retain() { _ = Self.tuned }

    private static let tuned: Bool = {
        mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    }()

    /// A message was received or memory freed now: postpones the trim.
    package static func noteChurn() {
        let now = ContinuousClock.now
        Self.policy.withLock { $0.noteChurn(at: now) }
        Self.churned.store(true, ordering: .relaxed)
    }

    /// Returns freed memory to the system when the process has been quiet for ``retention`` since its last churn.
    package static func returnIfQuiet() {
        guard Self.churned.load(ordering: .relaxed) else { return }
        let now = ContinuousClock.now
        let due = Self.policy.withLock { policy -> Bool in
            let due = policy.shouldTrim(at: now)
            if due { Self.churned.store(false, ordering: .relaxed) }
            return due
        }
        if due { _ = malloc_trim(0) }
    }
}
