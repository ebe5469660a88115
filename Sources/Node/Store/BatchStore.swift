public import ArrowIPC
internal import CMalloc
internal import Synchronization

/// One IPC message of a stored batch, exactly as it was received: the flatbuffer header and the body,
/// both views of the receive buffer (no copy).
public struct StoredMessage: Sendable {
    public let header: ArraySlice<UInt8>
    public let body: ArraySlice<UInt8>

    public init(header: ArraySlice<UInt8>, body: ArraySlice<UInt8>) {
        self.header = header
        self.body = body
    }
}

/// A complete, validated batch held by the store: its IPC messages (schema first) plus what FlightInfo
/// and the status need.
public struct StoredBatch: Sendable {
    public let key: BatchKey
    public let schema: Schema
    public let messages: [StoredMessage]
    public let rows: Int
    /// Bytes held: every header and body.
    public let bytes: Int
    /// Wall-clock creation time, milliseconds since the Unix epoch.
    public let createdAtMilliseconds: Int64
    let expiresAt: ContinuousClock.Instant

    public init(key: BatchKey, schema: Schema, messages: [StoredMessage], rows: Int, createdAtMilliseconds: Int64,
                expiresAt: ContinuousClock.Instant) {
        self.key = key
        self.schema = schema
        self.messages = messages
        self.rows = rows
        self.bytes = messages.reduce(0) { $0 + $1.header.count + $1.body.count }
        self.createdAtMilliseconds = createdAtMilliseconds
        self.expiresAt = expiresAt
    }
}

/// The in-memory batch store of a Flight node: thread-safe, with a memory limit that is reserved while a
/// batch is being received (so a batch is either wholly stored or not at all) and a TTL after which batches
/// disappear (swept by ``sweep()``, and never returned once expired).
public final class BatchStore: Sendable {
    /// A claim on a key while its batch is being received, with the bytes reserved so far.
    public struct Reservation: Sendable {
        public let key: BatchKey
        fileprivate let token: UInt64
    }

    private struct State {
        var batches: [BatchKey: StoredBatch] = [:]
        var pending: [BatchKey: (token: UInt64, bytes: Int)] = [:]
        var storedBytes = 0
        var reservedBytes = 0
        var nextToken: UInt64 = 1
    }

    public let maxMemory: Int
    public let ttl: Duration
    private let clock: @Sendable () -> ContinuousClock.Instant
    private let state = Mutex(State())

    /// - Parameters:
    ///   - maxMemory: most bytes held (stored plus reserved); `Int.max` for no limit.
    ///   - ttl: how long a batch stays after it is stored.
    ///   - clock: the time source (tests pass their own).
    public init(maxMemory: Int = .max, ttl: Duration = .seconds(3600),
                clock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.maxMemory = maxMemory
        self.ttl = ttl
        self.clock = clock
    }

    /// Claims `key` for a batch about to be received.
    ///
    /// - Parameter replacing: let the commit replace a stored batch under the same key (results: a later attempt
    ///   replaces what an earlier one stored); the old batch stays visible until then.
    /// - Throws: ``NodeError/alreadyExists(_:)`` if the key is stored (and not expired, unless `replacing`) or
    ///   being received.
    public func reserve(_ key: BatchKey, replacing: Bool = false) throws(NodeError) -> Reservation {
        let now = self.clock()
        let result: Result<Reservation, NodeError> = self.state.withLock { state in
            if let existing = state.batches[key], !replacing {
                if existing.expiresAt > now { return .failure(.alreadyExists("batch \(key) already exists")) }
                Self.remove(key, from: &state)
            }
            guard state.pending[key] == nil else { return .failure(.alreadyExists("batch \(key) is being stored")) }
            let token = state.nextToken
            state.nextToken += 1
            state.pending[key] = (token, 0)
            return .success(Reservation(key: key, token: token))
        }
        return try result.get()
    }

    /// Adds `bytes` to a reservation.
    ///
    /// - Throws: ``NodeError/resourceExhausted(_:)`` if the store would exceed `maxMemory`.
    public func grow(_ reservation: Reservation, by bytes: Int) throws(NodeError) {
        let result: Result<Void, NodeError> = self.state.withLock { state in
            guard let pending = state.pending[reservation.key], pending.token == reservation.token else {
                return .failure(.invalidArgument("no reservation for \(reservation.key)"))
            }
            let (total, overflow) = (state.storedBytes + state.reservedBytes).addingReportingOverflow(bytes)
            guard !overflow, total <= self.maxMemory else {
                return .failure(.resourceExhausted(
                    "storing \(reservation.key) would exceed the memory limit of \(self.maxMemory) bytes"))
            }
            state.pending[reservation.key] = (pending.token, pending.bytes + bytes)
            state.reservedBytes += bytes
            return .success(())
        }
        try result.get()
    }

    /// Makes a completely received batch visible, releasing the reservation.
    public func commit(_ reservation: Reservation, schema: Schema, messages: [StoredMessage], rows: Int) -> StoredBatch {
        let now = self.clock()
        let batch = StoredBatch(key: reservation.key, schema: schema, messages: messages, rows: rows,
                                createdAtMilliseconds: WallClock.milliseconds(), expiresAt: now.advanced(by: self.ttl))
        self.state.withLock { state in
            if let pending = state.pending.removeValue(forKey: reservation.key), pending.token == reservation.token {
                state.reservedBytes -= pending.bytes
            }
            Self.remove(reservation.key, from: &state)
            state.batches[reservation.key] = batch
            state.storedBytes += batch.bytes
        }
        return batch
    }

    /// Drops a reservation (the upload failed): nothing of it stays.
    public func cancel(_ reservation: Reservation) {
        self.state.withLock { state in
            guard let pending = state.pending[reservation.key], pending.token == reservation.token else { return }
            state.pending[reservation.key] = nil
            state.reservedBytes -= pending.bytes
        }
    }

    /// The batch under `key`, unless missing or expired.
    public func get(_ key: BatchKey) -> StoredBatch? {
        let now = self.clock()
        return self.state.withLock { state in
            guard let batch = state.batches[key], batch.expiresAt > now else { return nil }
            return batch
        }
    }

    /// Removes the batch under `key`; returns whether there was one.
    @discardableResult
    public func delete(_ key: BatchKey) -> Bool {
        let removed = self.state.withLock { state in
            guard state.batches[key] != nil else { return false }
            Self.remove(key, from: &state)
            return true
        }
        if removed { Self.returnFreedMemory() }
        return removed
    }

    /// Gives freed pages back to the system. Large receive buffers that glibc served from its arenas (after
    /// raising its mmap threshold) would otherwise stay resident after the batch that held them is gone.
    static func returnFreedMemory() {
        _ = malloc_trim(0)
    }

    /// Every unexpired batch whose key starts with `prefix`, ordered by key.
    public func list(prefix: String = "") -> [StoredBatch] {
        let now = self.clock()
        let batches = self.state.withLock { state in
            state.batches.values.filter { $0.expiresAt > now && $0.key.description.hasPrefix(prefix) }
        }
        return batches.sorted { $0.key < $1.key }
    }

    /// Removes expired batches; returns how many.
    @discardableResult
    public func sweep() -> Int {
        let now = self.clock()
        let removed = self.state.withLock { state in
            let expired = state.batches.values.filter { $0.expiresAt <= now }.map(\.key)
            for key in expired { Self.remove(key, from: &state) }
            return expired.count
        }
        if removed > 0 { Self.returnFreedMemory() }
        return removed
    }

    /// Counts and bytes of what is held.
    public var usage: (batches: Int, storedBytes: Int, reservedBytes: Int) {
        self.state.withLock { ($0.batches.count, $0.storedBytes, $0.reservedBytes) }
    }

    private static func remove(_ key: BatchKey, from state: inout State) {
        if let batch = state.batches.removeValue(forKey: key) { state.storedBytes -= batch.bytes }
    }
}
