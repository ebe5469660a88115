internal import Dispatch
internal import Glibc
internal import Synchronization

/// Writes one batch's file while the batch is still being received: each message, once validated, is queued and
/// written (`writev`, from its received slices) on a serial queue of its own, so the disk work overlaps the
/// network instead of following it. ``finish()`` waits for the queued writes, adds the end-of-stream marker,
/// fsyncs per policy and maps the file; ``abandon()`` removes it. Nothing is visible until the store installs it.
final class SpillWriter: Sendable {
    let key: BatchKey
    let spill: SpillDirectory
    private let queue: DispatchQueue

    private struct State {
        var layout = SpillLayout()
        var messages = 0
        /// The first write failure; later writes are skipped and ``finish()`` throws it.
        var failure: NodeError?
        var abandoned = false
    }

    private struct File {
        var descriptor: Int32 = -1
        var temporary = ""
    }

    private let state = Mutex(State())
    /// Touched only on `queue`.
    private let file = Mutex(File())

    init(key: BatchKey, spill: SpillDirectory) {
        self.key = key
        self.spill = spill
        self.queue = DispatchQueue(label: "valkeyflight.spill.writer")
    }

    /// Messages appended so far.
    var messageCount: Int { self.state.withLock { $0.messages } }

    /// Lays `message` out after the previous ones; returns what to write (``enqueue(_:)``, or ``fail(_:)`` when
    /// its bytes cannot be reserved) and how many bytes it adds to the file.
    ///
    /// - Throws: the failure of an earlier write (disk full: ``NodeError/resourceExhausted(_:)``), or
    ///   ``NodeError/invalidArgument(_:)`` for a header that does not decode.
    func layOut(_ message: StoredMessage) throws(NodeError) -> (segments: [ArraySlice<UInt8>], bytes: Int) {
        let result: Result<(segments: [ArraySlice<UInt8>], bytes: Int), NodeError> = self.state.withLock { state in
            if let failure = state.failure { return .failure(failure) }
            do throws(NodeError) {
                let added = try state.layout.append(message)
                state.messages += 1
                return .success(added)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Queues the write of segments from ``layOut(_:)``.
    func enqueue(_ segments: [ArraySlice<UInt8>]) {
        self.queue.async { self.write(segments) }
    }

    /// Poisons the writer: later writes are skipped and ``finish()`` throws `error`.
    func fail(_ error: NodeError) {
        self.state.withLock { state in if state.failure == nil { state.failure = error } }
    }

    /// Runs on `queue`.
    private func write(_ segments: [ArraySlice<UInt8>]) {
        guard self.state.withLock({ $0.failure == nil && !$0.abandoned }) else { return }
        do throws(NodeError) {
            var file = self.file.withLock { $0 }
            if file.descriptor < 0 {
                let created = try self.spill.createTemporary(for: self.key)
                file = File(descriptor: created.descriptor, temporary: created.path)
                self.file.withLock { $0 = file }
            }
            try SpillDirectory.write(segments, to: file.descriptor, path: file.temporary)
        } catch {
            self.state.withLock { state in if state.failure == nil { state.failure = error } }
        }
    }

    /// Waits for the queued writes, writes the end-of-stream marker, fsyncs per policy and (`map`) maps the file.
    ///
    /// - Returns: the written file (not yet installed), its layout, and the mapping (nil: the mapping checks
    ///   failed; the caller keeps the received memory).
    /// - Throws: the first write failure; the temporary file is then removed.
    func finish(map: Bool) async throws(NodeError) -> (file: SpillDirectory.PendingFile, mapped: ArraySlice<UInt8>?) {
        let finished: Result<SpillLayout, NodeError> = self.state.withLock { state in
            if let failure = state.failure { return .failure(failure) }
            do throws(NodeError) {
                try state.layout.finish()
            } catch {
                return .failure(error)
            }
            return .success(state.layout)
        }
        let layout: SpillLayout
        do throws(NodeError) {
            layout = try finished.get()
        } catch {
            self.abandon()
            throw error
        }
        let outcome: Result<(SpillDirectory.PendingFile, ArraySlice<UInt8>?), NodeError> =
            await withCheckedContinuation { continuation in
                self.queue.async {
                    self.write([SpillLayout.endOfStream[...]])
                    let file = self.file.withLock { $0 }
                    if let failure = self.state.withLock({ $0.failure }) {
                        continuation.resume(returning: .failure(failure))
                        return
                    }
                    do throws(NodeError) {
                        try self.spill.syncFile(file.descriptor, path: file.temporary)
                    } catch {
                        continuation.resume(returning: .failure(error))
                        return
                    }
                    // The descriptor and the temporary file now belong to the caller (installed or discarded there).
                    self.file.withLock { $0 = File() }
                    let pending = SpillDirectory.PendingFile(
                        key: self.key, temporary: file.temporary, final: self.spill.file(of: self.key), size: layout.size,
                        descriptor: file.descriptor, layout: layout)
                    let mapped = map ? MappedFile.map(file.descriptor, size: layout.size) : nil
                    continuation.resume(returning: .success((pending, mapped)))
                }
            }
        do throws(NodeError) {
            let (file, mapped) = try outcome.get()
            return (file, mapped)
        } catch {
            self.abandon()
            throw error
        }
    }

    /// Drops the file (the upload failed or was refused). The descriptor of a finished file belongs to the caller.
    func abandon() {
        self.state.withLock { $0.abandoned = true }
        self.queue.async {
            let file = self.file.withLock { state in
                defer { state = File() }
                return state
            }
            if file.descriptor >= 0 {
                close(file.descriptor)
                unlink(file.temporary)
            }
        }
    }
}
