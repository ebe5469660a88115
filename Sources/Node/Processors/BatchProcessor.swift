public import ArrowIPC

/// What one processing attempt gets: the batch as it is stored (the ValkeyFlight contract (CONTRACT.md) §3).
public struct ProcessorInput: Sendable {
    public let key: BatchKey
    /// 1-based: the claim that started this attempt set the batch's `attempts` to this value.
    public let attempt: Int
    /// The schema of the stored batch.
    public let schema: Schema
    /// The IPC messages as stored: the schema message first, then dictionaries and record batches.
    public let messages: [StoredMessage]

    /// An input from a stored batch's parts (nothing is checked or copied).
    public init(key: BatchKey, attempt: Int, schema: Schema, messages: [StoredMessage]) {
        self.key = key
        self.attempt = attempt
        self.schema = schema
        self.messages = messages
    }

    /// The end-of-stream marker: the continuation marker and a zero length.
    static let endOfStream: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]

    /// The input as an Arrow IPC stream: per message the 0xFFFFFFFF continuation + length + header + padding,
    /// then the body slice (never copied), and the end-of-stream marker.
    ///
    /// A stored body longer than its header's `bodyLength` (writers may pad) is cut to `bodyLength`, so the
    /// next message starts where a stream reader expects it.
    public var streamSegments: [ArraySlice<UInt8>] {
        var segments: [ArraySlice<UInt8>] = []
        segments.reserveCapacity(self.messages.count * 2 + 1)
        for message in self.messages {
            segments.append(EncodedMessage.frame(header: message.header)[...])
            guard !message.body.isEmpty else { continue }
            // Stored messages were validated when they were received; a header that does not decode here
            // cannot happen, and then the body is sent as it is.
            if let decoded = try? Message.decode(message.header), decoded.bodyLength < message.body.count {
                segments.append(message.body.prefix(decoded.bodyLength))
            } else {
                segments.append(message.body)
            }
        }
        segments.append(Self.endOfStream[...])
        return segments
    }

    /// Total bytes of ``streamSegments``.
    var streamLength: Int {
        self.streamSegments.reduce(0) { $0 + $1.count }
    }
}

/// What a successful attempt produced: the result batch, stored under `QUEUE/ID/result`.
public struct ProcessorOutput: Sendable {
    public let schema: Schema
    /// The result's IPC messages (schema first), in the form ``StoredMessage`` keeps them.
    public let messages: [StoredMessage]
    /// Rows over all record batches.
    public let rows: Int

    /// A result from its parts, trusted as given (``decoding(stream:limits:)-([UInt8],_)`` checks untrusted bytes).
    public init(schema: Schema, messages: [StoredMessage], rows: Int) {
        self.schema = schema
        self.messages = messages
        self.rows = rows
    }
}

/// A batch processor: turns one stored batch into its result. Implement it to embed your own processing in
/// the worker pool; ``PassthroughProcessor`` and ``ExecProcessor`` are the built-in ones.
public protocol BatchProcessor: Sendable {
    /// Runs one attempt. Throws ProcessorError (or any error: its description becomes last_error). Must honour task
    /// cancellation (the worker cancels on timeout and shutdown) promptly.
    func process(_ input: ProcessorInput) async throws -> ProcessorOutput
}

/// `--processor passthrough`: the result is the input, the same messages (no copy, no decode of the bodies).
public struct PassthroughProcessor: BatchProcessor {
    /// The passthrough processor; it has no settings.
    public init() {}

    /// Returns the input's messages; counts rows from the record batch headers.
    ///
    /// - Throws: ``ProcessorError/cancelled`` if the task is cancelled; ``ProcessorError/badOutput(_:stderrTail:)``
    ///   if a stored header does not decode (stored batches were validated, so only a broken caller gets it).
    public func process(_ input: ProcessorInput) async throws -> ProcessorOutput {
        if Task.isCancelled { throw ProcessorError.cancelled }
        var rows = 0
        for message in input.messages {
            let decoded: Message
            do {
                decoded = try Message.decode(message.header)
            } catch {
                throw ProcessorError.badOutput("input message header does not decode: \(error)", stderrTail: "")
            }
            if case let .recordBatch(header) = decoded.header {
                let (sum, overflow) = rows.addingReportingOverflow(header.length)
                guard !overflow else { throw ProcessorError.badOutput("row count overflows", stderrTail: "") }
                rows = sum
            }
        }
        return ProcessorOutput(schema: input.schema, messages: input.messages, rows: rows)
    }
}

/// Why a processing attempt failed. `description` is what the batch's `last_error` shows.
public enum ProcessorError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The child exited with a non-zero status (or, in persistent mode, exited before it answered).
    case exited(status: Int32, stderrTail: String)
    /// The child was killed by a signal it did not get from us (a crash, the OOM killer, someone's kill).
    case killed(signal: Int32, stderrTail: String)
    /// The output is not an acceptable Arrow IPC stream (empty, not IPC, truncated, invalid, too large), or a
    /// persistent child broke the framing.
    case badOutput(String, stderrTail: String)
    /// The attempt was cancelled (timeout or shutdown: the worker decides which it was); the child was killed.
    case cancelled
    /// The child could not be started (or the processor was configured wrongly).
    case spawnFailed(String)
    /// A persistent child answered with an error status; the text is its message.
    case failed(String)

    /// One line for `last_error`: what happened, then the stderr tail if there is one.
    public var description: String {
        switch self {
        case let .exited(status, tail):
            return "processor exited with status \(status)" + Self.suffix(tail)
        case let .killed(signal, tail):
            return "processor was killed by signal \(signal)\(Self.signalName(signal).map { " (\($0))" } ?? "")"
                + Self.suffix(tail)
        case let .badOutput(message, tail):
            return "processor output rejected: \(message)" + Self.suffix(tail)
        case .cancelled:
            return "processor cancelled (timeout or shutdown); the child was killed"
        case let .spawnFailed(message):
            return "cannot start processor: \(message)"
        case let .failed(message):
            return "processor failed: \(message)"
        }
    }

    /// The stderr tail, if any, after a colon.
    private static func suffix(_ tail: String) -> String {
        tail.isEmpty ? "" : ": \(tail)"
    }

    static func signalName(_ signal: Int32) -> String? {
        switch signal {
        case 1: "SIGHUP"
        case 2: "SIGINT"
        case 3: "SIGQUIT"
        case 4: "SIGILL"
        case 6: "SIGABRT"
        case 7: "SIGBUS"
        case 8: "SIGFPE"
        case 9: "SIGKILL"
        case 11: "SIGSEGV"
        case 13: "SIGPIPE"
        case 15: "SIGTERM"
        case 24: "SIGXCPU"
        case 25: "SIGXFSZ"
        default: nil
        }
    }

    /// The same error with `tail` as its stderr tail (for errors found after the child ended).
    func withStderrTail(_ tail: String) -> ProcessorError {
        switch self {
        case let .exited(status, _): .exited(status: status, stderrTail: tail)
        case let .killed(signal, _): .killed(signal: signal, stderrTail: tail)
        case let .badOutput(message, _): .badOutput(message, stderrTail: tail)
        case .cancelled, .spawnFailed, .failed: self
        }
    }
}
