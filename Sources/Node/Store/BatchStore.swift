public import ArrowIPC
internal import IOLoop
internal import Synchronization

/// One IPC message of a stored batch, exactly as it was received: the flatbuffer header and the body,
/// both views of the receive buffer (no copy).
public struct StoredMessage: Sendable {
    public let header: ArraySlice<UInt8>
    public let body: ArraySlice<UInt8>
    /// Bytes this message keeps alive: the whole received gRPC message its slices share (default: header + body).
    public let heldBytes: Int

    public init(header: ArraySlice<UInt8>, body: ArraySlice<UInt8>, heldBytes: Int? = nil) {
        self.header = header
        self.body = body
        self.heldBytes = heldBytes ?? header.count + body.count
    }
}

/// A complete, validated batch held by the store: its IPC messages (schema first) plus what FlightInfo
/// and the status need.
public struct StoredBatch: Sendable {
    public let key: BatchKey
    public let schema: Schema
    public let messages: [StoredMessage]
    public let rows: Int
    /// Bytes of the IPC stream: every header and body.
    public let bytes: Int
    /// Bytes kept alive (charged against `maxMemory`): every received message the headers and bodies are slices of.
    public let heldBytes: Int
    /// Wall-clock creation time, milliseconds since the Unix epoch.
    public let createdAtMilliseconds: Int64
    /// Bytes of its file in `--data-dir` (0: held in memory only). A spilled batch's messages are slices of the
    /// mapped file and hold no memory (`heldBytes` 0).
    public internal(set) var fileBytes = 0
    /// Its messages are slices of a mapping of its file (see `MappedFile`).
    var isMapped = false
    let expiresAt: ContinuousClock.Instant

    public init(key: BatchKey, schema: Schema, messages: [StoredMessage], rows: Int, createdAtMilliseconds: Int64,
                expiresAt: ContinuousClock.Instant) {
        self.key = key
        self.schema = schema
        self.messages = messages
        self.rows = rows
        // Counts of slices that exist in memory: their sum fits an Int, but say so rather than trap.
        var bytes = 0
        var held = 0
        for message in messages {
            let (withHeader, headerOverflow) = bytes.addingReportingOverflow(message.header.count)
            let (total, bodyOverflow) = withHeader.addingReportingOverflow(message.body.count)
            bytes = headerOverflow || bodyOverflow ? .max : total
            let (heldTotal, heldOverflow) = held.addingReportingOverflow(message.heldBytes)
            held = heldOverflow ? .max : heldTotal
        }
        self.bytes = bytes
        self.heldBytes = held
        self.createdAtMilliseconds = createdAtMilliseconds
        self.expiresAt = expiresAt
    }
}

/// The batch store of a Flight node: thread-safe, with a memory limit that is reserved while a batch is being
/// received (so a batch is either wholly stored or not at all) and a TTL after which batches disappear (swept by
/// ``sweep()``, and never returned once expired). With a ``SpillDirectory`` (`--data-dir`), ``store(_:schema:messages:rows:)``
/// writes each batch as a file before it becomes visible and keeps it as slices of the mapped file, so
/// `maxMemory` bounds only what is in memory and `spill.maxDisk` the files (see `BatchStore+Durable.swift`).
public final class BatchStore: Sendable {
    /// A claim on a key while its batch is being received, with the bytes reserved so far.
    public struct Reservation: Sendable {
        public let key: BatchKey
        let token: UInt64
    }

    struct Pending {
        var token: UInt64
        var bytes: Int
        /// Disk bytes reserved for its file.
        var disk = 0
        /// Writes its file while it is received (with a spill directory).
        var writer: SpillWriter?
    }

    struct State {
        var batches: [BatchKey: StoredBatch] = [:]
        var pending: [BatchKey: Pending] = [:]
        var storedBytes = 0
        var reservedBytes = 0
        var nextToken: UInt64 = 1
        /// Bytes of the stored batches' files, and reserved for files being written.
        var diskBytes = 0
        var reservedDiskBytes = 0
        /// Batches whose file failed its checks at start, with the reason.
        var corrupted: [BatchKey: String] = [:]
        /// Stored batches served from a mapping (each takes three of the process's memory maps).
        var mappedBatches = 0
    }

    public let maxMemory: Int
    public let ttl: Duration
    /// `--data-dir`: where batches are spilled (nil: in memory only).
    public let spill: SpillDirectory?
    let clock: @Sendable () -> ContinuousClock.Instant
    let state = Mutex(State())

    /// - Parameters:
    ///   - maxMemory: most bytes held (stored plus reserved); `Int.max` for no limit.
    ///   - ttl: how long a batch stays after it is stored.
    ///   - spill: the `--data-dir` batches are written to (nil: in memory only); ``loadSpilled(log:)`` reads
    ///     what an earlier run left there.
    ///   - clock: the time source (tests pass their own).
    public init(maxMemory: Int = .max, ttl: Duration = .seconds(3600), spill: SpillDirectory? = nil,
                clock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.maxMemory = maxMemory
        self.ttl = ttl
        self.spill = spill
        self.clock = clock
        FreedMemory.retain()
    }

    /// Claims `key` for a batch about to be received.
    ///
    /// - Parameter replacing: let the commit replace a stored batch under the same key (results: a later attempt
    ///   replaces what an earlier one stored); the old batch stays visible until then.
    /// - Throws: ``NodeError/alreadyExists(_:)`` if the key is stored (and not expired, unless `replacing`) or
    ///   being received; ``NodeError/invalidArgument(_:)`` for a key that cannot name a file in `--data-dir`.
    public func reserve(_ key: BatchKey, replacing: Bool = false) throws(NodeError) -> Reservation {
        if self.spill != nil { try SpillDirectory.checkName(key) }
        let now = self.clock()
        let result: Result<Reservation, NodeError> = self.state.withLock { state in
            if let existing = state.batches[key], !replacing {
                if existing.expiresAt > now { return .failure(.alreadyExists("batch \(key) already exists")) }
                self.remove(key, from: &state)
            }
            guard state.pending[key] == nil else { return .failure(.alreadyExists("batch \(key) is being stored")) }
            let token = state.nextToken
            state.nextToken += 1
            state.pending[key] = Pending(token: token, bytes: 0, writer: self.spill.map { SpillWriter(key: key, spill: $0) })
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
            guard bytes >= 0 else { return .failure(.invalidArgument("cannot grow a reservation by \(bytes) bytes")) }
            // storedBytes + reservedBytes never exceeds maxMemory, an Int.
            let (total, overflow) = (state.storedBytes + state.reservedBytes).addingReportingOverflow(bytes)
            guard !overflow, total <= self.maxMemory else {
                return .failure(.resourceExhausted(
                    "storing \(reservation.key) would exceed the memory limit of \(self.maxMemory) bytes"))
            }
            state.pending[reservation.key]?.bytes = pending.bytes + bytes
            state.reservedBytes += bytes
            return .success(())
        }
        try result.get()
    }

    /// Makes a completely received batch visible, releasing the reservation. It stays in memory only, also with a
    /// `spill` directory: ``store(_:schema:messages:rows:)`` is the call that writes it to disk first.
    public func commit(_ reservation: Reservation, schema: Schema, messages: [StoredMessage], rows: Int) -> StoredBatch {
        let now = self.clock()
        let batch = StoredBatch(key: reservation.key, schema: schema, messages: messages, rows: rows,
                                createdAtMilliseconds: WallClock.milliseconds(), expiresAt: now.advanced(by: self.ttl))
        self.state.withLock { state in
            if let pending = state.pending[reservation.key], pending.token == reservation.token {
                state.pending[reservation.key] = nil
                state.reservedBytes -= pending.bytes
                state.reservedDiskBytes -= pending.disk
                pending.writer?.abandon()
            }
            self.remove(reservation.key, from: &state)
            state.batches[reservation.key] = batch
            state.storedBytes += batch.heldBytes
        }
        return batch
    }

    /// Drops a reservation (the upload failed): nothing of it stays.
    public func cancel(_ reservation: Reservation) {
        self.state.withLock { state in
            guard let pending = state.pending[reservation.key], pending.token == reservation.token else { return }
            state.pending[reservation.key] = nil
            state.reservedBytes -= pending.bytes
            state.reservedDiskBytes -= pending.disk
            pending.writer?.abandon()
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

    /// Removes the batch under `key` (and its file); returns whether there was one (or a corrupted file's record).
    @discardableResult
    public func delete(_ key: BatchKey) -> Bool {
        let removed = self.state.withLock { state in
            let wasCorrupted = state.corrupted.removeValue(forKey: key) != nil
            guard state.batches[key] != nil else { return wasCorrupted }
            self.remove(key, from: &state)
            return true
        }
        // The batch's memory is left to the allocator for the next batches until the process is quiet.
        if removed { FreedMemory.noteChurn() }
        return removed
    }

    /// Every unexpired batch whose key starts with `prefix`, ordered by key.
    public func list(prefix: String = "") -> [StoredBatch] {
        let now = self.clock()
        let batches = self.state.withLock { state in
            state.batches.values.filter { $0.expiresAt > now && $0.key.description.hasPrefix(prefix) }
        }
        return batches.sorted { $0.key < $1.key }
    }

    /// Removes expired batches; returns how many (the node calls this every second). Their memory goes back to the
    /// system with ``FreedMemory``'s rule.
    @discardableResult
    public func sweep() -> Int {
        let now = self.clock()
        let removed = self.state.withLock { state in
            let expired = state.batches.values.filter { $0.expiresAt <= now }.map(\.key)
            for key in expired { self.remove(key, from: &state) }
            return expired.count
        }
        if removed > 0 { FreedMemory.noteChurn() }
        return removed
    }

    /// Counts and bytes of what is held.
    public var usage: (batches: Int, storedBytes: Int, reservedBytes: Int) {
        self.state.withLock { ($0.batches.count, $0.storedBytes, $0.reservedBytes) }
    }

    /// Removes `key`'s batch and its file. The unlink happens under the lock, so that a file installed for the
    /// same key afterwards is never the one removed.
    func remove(_ key: BatchKey, from state: inout State) {
        guard let batch = state.batches.removeValue(forKey: key) else { return }
        state.storedBytes -= batch.heldBytes
        if batch.isMapped { state.mappedBatches -= 1 }
        if batch.fileBytes > 0 {
            state.diskBytes -= batch.fileBytes
            self.spill?.remove(key)
        }
    }
}
