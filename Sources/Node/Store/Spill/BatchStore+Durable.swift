public import ArrowIPC
internal import Glibc
internal import Synchronization

extension BatchStore {
    /// Makes a completely received batch visible, releasing the reservation. With a `spill` directory the batch is
    /// first written as its Arrow IPC stream file (from the received slices, `writev`), fsynced per policy and
    /// renamed into place; the stored batch is then slices of the mapped file, so the received memory is released
    /// as soon as the caller drops `messages`. Without one it is ``commit(_:schema:messages:rows:)``.
    ///
    /// On failure the reservation is cancelled and nothing of the batch stays (no file, nothing visible).
    ///
    /// - Throws: ``NodeError/resourceExhausted(_:)`` when the file would exceed `--max-disk` or the disk is full;
    ///   ``NodeError/io(operation:path:errno:)`` when the file cannot be written.
    public func store(_ reservation: Reservation, schema: Schema, messages: [StoredMessage], rows: Int)
        async throws(NodeError) -> StoredBatch
    {
        guard let spill = self.spill else {
            return self.commit(reservation, schema: schema, messages: messages, rows: rows)
        }
        do throws(NodeError) {
            let key = reservation.key
            let writer = self.state.withLock { state in
                state.pending[key].flatMap { $0.token == reservation.token ? $0.writer : nil }
            }
            // Past the mapping budget (memory maps of the process) batches stay in the received memory.
            let mayMap = self.state.withLock { $0.mappedBatches } < MappedFile.maximumMappings
            let file: SpillDirectory.PendingFile
            let mapped: ArraySlice<UInt8>?
            if let writer, writer.messageCount > 0 {
                // Written while received (``append(_:_:)``): only the end-of-stream marker and the fsync are left.
                guard writer.messageCount == messages.count else {
                    throw .invalidArgument("\(key): \(writer.messageCount) of its \(messages.count) messages were appended")
                }
                try self.reserveDisk(reservation, bytes: SpillLayout.endOfStream.count, limit: spill.maxDisk)
                (file, mapped) = try await writer.finish(map: mayMap)
            } else {
                writer?.abandon()
                let layout = try SpillLayout(messages)
                try self.reserveDisk(reservation, bytes: layout.size, limit: spill.maxDisk)
                (file, mapped) = try await SpillDirectory.offPool { () throws(NodeError) in
                    let file = try spill.writeTemporary(layout, for: key)
                    return (file, mayMap ? MappedFile.map(file.descriptor, size: file.size) : nil)
                }
            }
            close(file.descriptor)
            // Fallback (the mapping checks failed): the batch stays in the received memory, as charged.
            let kept = mapped.map { file.layout.messages(in: $0) } ?? messages
            let batch = try self.commitSpilled(reservation, schema: schema, messages: kept, rows: rows, file: file,
                                               spill: spill, isMapped: mapped != nil)
            do throws(NodeError) {
                try await SpillDirectory.offPool { () throws(NodeError) in try spill.syncDirectory(of: key) }
            } catch {
                self.delete(key)
                throw error
            }
            return batch
        } catch {
            self.cancel(reservation)
            throw error
        }
    }

    /// With a `spill` directory, lays out `message` (the next one of the batch being received, already validated)
    /// in the batch's file and queues its write, so the file is written while the rest arrives; without one it
    /// does nothing. ``store(_:schema:messages:rows:)`` then only finishes the file — when every message was
    /// appended this way, in order; else it writes the file itself.
    ///
    /// - Throws: ``NodeError/resourceExhausted(_:)`` when the file would exceed `--max-disk` or an earlier write
    ///   found the disk full; ``NodeError/io(operation:path:errno:)`` when an earlier write failed.
    public func append(_ reservation: Reservation, _ message: StoredMessage) throws(NodeError) {
        guard let spill = self.spill else { return }
        let writer = self.state.withLock { state in
            state.pending[reservation.key].flatMap { $0.token == reservation.token ? $0.writer : nil }
        }
        guard let writer else { throw .invalidArgument("no reservation for \(reservation.key)") }
        // The message's place in the file is known before it is written: reserve its bytes first.
        let added = try writer.layOut(message)
        do throws(NodeError) {
            try self.reserveDisk(reservation, bytes: added.bytes, limit: spill.maxDisk)
        } catch {
            writer.fail(error)
            throw error
        }
        writer.enqueue(added.segments)
    }

    private func reserveDisk(_ reservation: Reservation, bytes: Int, limit: Int) throws(NodeError) {
        let result: Result<Void, NodeError> = self.state.withLock { state in
            guard let pending = state.pending[reservation.key], pending.token == reservation.token else {
                return .failure(.invalidArgument("no reservation for \(reservation.key)"))
            }
            // diskBytes + reservedDiskBytes never exceeds the limit, an Int (or Int.max without one).
            let (total, overflow) = (state.diskBytes + state.reservedDiskBytes).addingReportingOverflow(bytes)
            guard !overflow, total <= limit else {
                return .failure(.resourceExhausted(
                    "storing \(reservation.key) (\(bytes) bytes) would exceed the disk limit of \(limit) bytes "
                        + "(--max-disk; \(state.diskBytes + state.reservedDiskBytes) bytes used)"))
            }
            state.pending[reservation.key]?.disk = pending.disk + bytes
            state.reservedDiskBytes += bytes
            return .success(())
        }
        try result.get()
    }

    /// Renames the file into place and makes the batch visible in one step under the lock.
    private func commitSpilled(_ reservation: Reservation, schema: Schema, messages: [StoredMessage], rows: Int,
                               file: SpillDirectory.PendingFile, spill: SpillDirectory,
                               isMapped: Bool) throws(NodeError) -> StoredBatch {
        let now = self.clock()
        var batch = StoredBatch(key: reservation.key, schema: schema, messages: messages, rows: rows,
                                createdAtMilliseconds: WallClock.milliseconds(), expiresAt: now.advanced(by: self.ttl))
        batch.fileBytes = file.size
        batch.isMapped = isMapped
        let result: Result<StoredBatch, NodeError> = self.state.withLock { state in
            guard let pending = state.pending[reservation.key], pending.token == reservation.token else {
                spill.discard(file)
                return .failure(.invalidArgument("no reservation for \(reservation.key)"))
            }
            do throws(NodeError) {
                try spill.install(file)
            } catch {
                spill.discard(file)
                return .failure(error)
            }
            state.pending[reservation.key] = nil
            state.reservedBytes -= pending.bytes
            state.reservedDiskBytes -= pending.disk
            // The rename replaced an earlier version's file: forget that batch without unlinking.
            if let old = state.batches.removeValue(forKey: reservation.key) {
                state.storedBytes -= old.heldBytes
                state.diskBytes -= old.fileBytes
                if old.isMapped { state.mappedBatches -= 1 }
            }
            state.corrupted[reservation.key] = nil
            state.batches[reservation.key] = batch
            state.storedBytes += batch.heldBytes
            state.diskBytes += batch.fileBytes
            if batch.isMapped { state.mappedBatches += 1 }
            return .success(batch)
        }
        return try result.get()
    }

    /// Bytes of the batch files in `--data-dir` (stored, and reserved for files being written).
    public var diskUsage: (fileBytes: Int, reservedBytes: Int) {
        self.state.withLock { ($0.diskBytes, $0.reservedDiskBytes) }
    }

    /// Why `key`'s file was not loaded at start (it failed its checks), or nil.
    public func corruption(of key: BatchKey) -> String? {
        self.state.withLock { $0.corrupted[key] }
    }

    /// What ``loadSpilled(log:)`` found.
    public struct LoadReport: Sendable, Equatable {
        /// Batches loaded and serving.
        public var loaded = 0
        /// Files that failed their checks (renamed `….arrows.corrupt`).
        public var corrupted = 0
        /// Temporary files of interrupted writes, removed.
        public var temporaryRemoved = 0
        /// Files older than the TTL, removed.
        public var expired = 0
    }

    /// Rebuilds the index from the files an earlier run left in the `spill` directory, with the O(buffers)
    /// structural checks of each file (not a full re-read of the data). Temporary files are removed; a file that
    /// is truncated or corrupt is renamed `NAME.arrows.corrupt`, logged in one line and remembered
    /// (``corruption(of:)``), and never stops the start; files older than the TTL are removed. A file's age is its
    /// modification time.
    ///
    /// - Parameter log: gets each log line, `warning` true for a corrupted file (the store does not depend on the
    ///   node's logger: the DoPut fuzz harness builds it alone).
    package func loadSpilled(log: @escaping @Sendable (_ warning: Bool, _ line: String) -> Void = { _, _ in })
        async -> LoadReport
    {
        guard let spill = self.spill else { return LoadReport() }
        let files = (try? await SpillDirectory.offPool { () throws(NodeError) in spill.scan(log: log) })
            ?? SpillDirectory.ScanResult()
        var report = LoadReport()
        report.temporaryRemoved = files.temporaryRemoved
        let ttlMilliseconds = Self.milliseconds(self.ttl)
        for entry in files.batches {
            let outcome: Result<OpenedFile, NodeError>
            let mayMap = self.state.withLock { $0.mappedBatches } < MappedFile.maximumMappings
            do throws(NodeError) {
                outcome = .success(try await SpillDirectory.offPool { () throws(NodeError) in
                    try Self.open(entry, spill: spill, mayMap: mayMap)
                })
            } catch {
                outcome = .failure(error)
            }
            let nowWall = WallClock.milliseconds()
            switch outcome {
            case let .success(opened):
                let age = max(0, nowWall - opened.modifiedMilliseconds)
                guard age < ttlMilliseconds else {
                    unlink(entry.path)
                    report.expired += 1
                    continue
                }
                var batch = StoredBatch(key: entry.key, schema: opened.contents.schema, messages: opened.contents.messages,
                                        rows: opened.contents.rows, createdAtMilliseconds: opened.modifiedMilliseconds,
                                        expiresAt: self.clock().advanced(by: .milliseconds(ttlMilliseconds - age)))
                batch.fileBytes = opened.size
                batch.isMapped = opened.mapped
                self.state.withLock { state in
                    state.batches[entry.key] = batch
                    state.storedBytes += batch.heldBytes
                    state.diskBytes += batch.fileBytes
                    if batch.isMapped { state.mappedBatches += 1 }
                }
                report.loaded += 1
            case let .failure(error):
                let reason = "the data of batch \(entry.key) was corrupted on disk (\(entry.path): \(error))"
                rename(entry.path, entry.path + ".corrupt")
                log(true, "skipping a corrupted batch file key=\(entry.key) file=\(entry.path) error=\(error)")
                self.state.withLock { $0.corrupted[entry.key] = reason }
                report.corrupted += 1
            }
        }
        return report
    }

    private struct OpenedFile: Sendable {
        let contents: SpilledBatchContents
        let mapped: Bool
        let size: Int
        let modifiedMilliseconds: Int64
    }

    /// Maps (or reads) one file and checks it. Blocking.
    private static func open(_ entry: SpillDirectory.FoundFile, spill: SpillDirectory, mayMap: Bool) throws(NodeError)
        -> OpenedFile
    {
        let fd = Glibc.open(entry.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open", path: entry.path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(operation: "stat", path: entry.path, errno: errno) }
        let size = Int(info.st_size)
        guard size > 0 else { throw .invalidArgument("the file is empty") }
        let bytes: ArraySlice<UInt8>
        let mapped: Bool
        if mayMap, let map = MappedFile.map(fd, size: size) {
            (bytes, mapped) = (map, true)
        } else {
            (bytes, mapped) = (try MappedFile.read(fd, size: size, path: entry.path)[...], false)
        }
        var contents: SpilledBatchContents
        do {
            contents = try SpilledBatchContents(parsing: bytes)
        } catch let error as NodeError {
            throw error
        } catch {
            throw .invalidArgument("\(error)")
        }
        if !mapped {
            // Read into memory: the whole file is held, charged to the first message.
            let held = contents.messages.enumerated().map { index, message in
                StoredMessage(header: message.header, body: message.body, heldBytes: index == 0 ? size : 0)
            }
            contents = SpilledBatchContents(schema: contents.schema, messages: held, rows: contents.rows)
        }
        let modified = Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
        return OpenedFile(contents: contents, mapped: mapped, size: size, modifiedMilliseconds: modified)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        return overflow ? .max : ms + attoseconds / 1_000_000_000_000_000
    }
}

extension SpillDirectory {
    /// A batch file found at start.
    struct FoundFile: Sendable {
        let key: BatchKey
        let path: String
    }

    struct ScanResult: Sendable {
        var batches: [FoundFile] = []
        var temporaryRemoved = 0
    }

    /// Lists `DIR/QUEUE/ID.arrows` and `DIR/QUEUE/ID/result.arrows` and removes temporary files (`.NAME.tmp-…`)
    /// left by interrupted writes. Names that are no batch of ours are left alone. Blocking.
    func scan(log: @Sendable (_ warning: Bool, _ line: String) -> Void) -> ScanResult {
        var result = ScanResult()
        for queue in Self.entries(self.path) ?? [] where queue.isDirectory && !queue.name.hasPrefix(".") {
            let queueDirectory = "\(self.path)/\(queue.name)"
            for entry in Self.entries(queueDirectory) ?? [] {
                let path = "\(queueDirectory)/\(entry.name)"
                if entry.isDirectory {
                    for inner in Self.entries(path) ?? [] where !inner.isDirectory {
                        if self.removeIfTemporary(inner.name, in: path) {
                            result.temporaryRemoved += 1
                        } else if inner.name == "result.arrows",
                                  let key = try? BatchKey(queue: queue.name, id: entry.name, isResult: true) {
                            result.batches.append(FoundFile(key: key, path: "\(path)/result.arrows"))
                        }
                    }
                    continue
                }
                if self.removeIfTemporary(entry.name, in: queueDirectory) {
                    result.temporaryRemoved += 1
                } else if entry.name.hasSuffix(".arrows"), let key = try? BatchKey(queue: queue.name,
                                                                                     id: String(entry.name.dropLast(7))) {
                    result.batches.append(FoundFile(key: key, path: path))
                }
            }
        }
        if result.temporaryRemoved > 0 {
            log(false, "removed temporary files of interrupted writes count=\(result.temporaryRemoved) dir=\(self.path)")
        }
        result.batches.sort { $0.key < $1.key }
        return result
    }

    private func removeIfTemporary(_ name: String, in directory: String) -> Bool {
        guard name.hasPrefix("."), name.contains(".arrows.tmp-") else { return false }
        return unlink("\(directory)/\(name)") == 0
    }
}
