import Testing

@testable import IOLoop

/// When freed message memory goes back to the system: once, `retention` after the last churn.
@Suite struct FreedMemoryTests {
    let start = ContinuousClock.now

    /// `shouldTrim` outside `#expect` (its macro cannot call a mutating method).
    static func trims(_ policy: inout QuietTrimPolicy, _ now: ContinuousClock.Instant) -> Bool {
        policy.shouldTrim(at: now)
    }

    @Test func nothingIsTrimmedBeforeAnyChurn() {
        var policy = QuietTrimPolicy(retention: .seconds(30))
        #expect(!Self.trims(&policy, self.start))
        #expect(!Self.trims(&policy, self.start + .seconds(3600)))
    }

    @Test func trimsOnceTheRetentionAfterTheLastChurn() {
        var policy = QuietTrimPolicy(retention: .seconds(30))
        policy.noteChurn(at: self.start)
        policy.noteChurn(at: self.start + .seconds(10))
        // 30 s after the first churn but only 20 s after the last: not yet.
        #expect(!Self.trims(&policy, self.start + .seconds(30)))
        #expect(!Self.trims(&policy, self.start + .seconds(39)))
        #expect(Self.trims(&policy, self.start + .seconds(40)))
        // Once per burst: nothing more to return until something churns again.
        #expect(!Self.trims(&policy, self.start + .seconds(41)))
        #expect(!Self.trims(&policy, self.start + .seconds(500)))
        policy.noteChurn(at: self.start + .seconds(600))
        #expect(!Self.trims(&policy, self.start + .seconds(629)))
        #expect(Self.trims(&policy, self.start + .seconds(630)))
    }
}
