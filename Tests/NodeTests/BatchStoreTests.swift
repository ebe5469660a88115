import ArrowIPC
import Node
import Synchronization
import Testing

@Suite struct BatchKeyTests {
    @Test func parsesKeysAndResultKeys() throws {
        let key = try BatchKey(parsing: "orders/2026-11-26_a.b")
        #expect(key.queue == "orders" && key.id == "2026-11-26_a.b" && !key.isResult)
        #expect(key.resultKey.description == "orders/2026-11-26_a.b/result")
        #expect(try BatchKey(path: ["q", "i", "result"]).isResult)
    }

    @Test(arguments: ["", "q", "q/", "/i", "q/i/x", "q/i/result/x", "q w/i", "q/é", String(repeating: "a", count: 129) + "/i"])
    func rejectsMalformedKeys(text: String) {
        #expect(throws: NodeError.self) { _ = try BatchKey(parsing: text) }
    }
}

/// A manual clock for TTL tests.
final class TestClock: Sendable {
    private let offset = Mutex(Duration.zero)
    private let start = ContinuousClock.now
    func now() -> ContinuousClock.Instant { self.start.advanced(by: self.offset.withLock { $0 }) }
    func advance(_ duration: Duration) { self.offset.withLock { $0 += duration } }
}

@Suite struct BatchStoreTests {
    static let schema = Schema([Field("x", .int(.int64))])
    static let message = StoredMessage(header: [UInt8](repeating: 1, count: 16)[...], body: [UInt8](repeating: 2, count: 48)[...])

    @Test func storesOnlyCompleteBatchesAndRejectsDuplicates() throws {
        let store = BatchStore()
        let key = try BatchKey(parsing: "q/1")
        let reservation = try store.reserve(key)
        #expect(store.get(key) == nil, "a batch being received must not be visible")
        #expect(throws: NodeError.alreadyExists("batch q/1 is being stored")) { _ = try store.reserve(key) }
        try store.grow(reservation, by: 64)
        let batch = store.commit(reservation, schema: Self.schema, messages: [Self.message], rows: 3)
        #expect(batch.bytes == 64)
        #expect(store.get(key)?.rows == 3)
        #expect(throws: NodeError.alreadyExists("batch q/1 already exists")) { _ = try store.reserve(key) }
        #expect(store.usage.storedBytes == 64 && store.usage.reservedBytes == 0)
        #expect(store.delete(key))
        #expect(store.get(key) == nil && store.usage.storedBytes == 0)
    }

    @Test func memoryLimitRejectsAndLeavesNothingBehind() throws {
        let store = BatchStore(maxMemory: 100)
        let first = try store.reserve(try BatchKey(parsing: "q/a"))
        try store.grow(first, by: 60)
        let second = try store.reserve(try BatchKey(parsing: "q/b"))
        #expect(throws: NodeError.resourceExhausted("storing q/b would exceed the memory limit of 100 bytes")) {
            try store.grow(second, by: 50)
        }
        store.cancel(second)
        store.cancel(first)
        #expect(store.usage.reservedBytes == 0)
        #expect(store.list().isEmpty)
        // The key is free again after a cancelled upload.
        _ = try store.reserve(try BatchKey(parsing: "q/b"))
    }

    @Test func batchesExpireAfterTheirTTL() throws {
        let clock = TestClock()
        let store = BatchStore(ttl: .seconds(60), clock: { clock.now() })
        for id in ["a", "b"] {
            let reservation = try store.reserve(try BatchKey(parsing: "q/\(id)"))
            _ = store.commit(reservation, schema: Self.schema, messages: [Self.message], rows: 1)
        }
        clock.advance(.seconds(30))
        #expect(store.list(prefix: "q/").count == 2)
        clock.advance(.seconds(31))
        #expect(store.get(try BatchKey(parsing: "q/a")) == nil, "expired batches are never returned")
        #expect(store.list().isEmpty)
        #expect(store.sweep() == 2)
        #expect(store.usage.batches == 0 && store.usage.storedBytes == 0)
        // An expired key can be stored again.
        _ = try store.reserve(try BatchKey(parsing: "q/a"))
    }

    @Test func listFiltersByPrefixInKeyOrder() throws {
        let store = BatchStore()
        for key in ["b/2", "a/1", "b/1", "ab/1"] {
            _ = store.commit(try store.reserve(try BatchKey(parsing: key)), schema: Self.schema, messages: [], rows: 0)
        }
        #expect(store.list(prefix: "b/").map(\.key.description) == ["b/1", "b/2"])
        #expect(store.list().map(\.key.description) == ["a/1", "ab/1", "b/1", "b/2"])
    }

    @Test func concurrentReservationsOfOneKeyLetExactlyOneWin() async throws {
        let store = BatchStore()
        let key = try BatchKey(parsing: "race/1")
        let winners = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<64 { group.addTask { (try? store.reserve(key)) != nil } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(winners == 1)
    }
}
