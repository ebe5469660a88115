public import ArrowIPC
public import FlightProto

/// Turns the FlightData messages of one IPC stream (a DoPut, a DoExchange upload, a DoGet reply a worker reads)
/// into a stored batch's messages: each header and body is validated in full (untrusted bytes) and kept as the
/// slice it arrived in, so nothing of the body is copied.
public struct BatchIngest: Sendable {
    private var decoder = IPCMessageDecoder(options: .untrusted)
    public private(set) var messages: [StoredMessage] = []
    public private(set) var rows = 0
    /// Header and body bytes taken in so far.
    public private(set) var bytes = 0
    /// What the batch is called in error messages.
    public let what: String

    public init(what: String) {
        self.what = what
    }

    /// Validates one FlightData message and keeps its IPC message. `charge` is called with the message's size
    /// before it is kept (the store's reservation grows there, and may refuse), and for a compressed body with
    /// its decompressed size before decoding and the negative of it after.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` for a body without a header or rows beyond `Int.max`;
    ///   `ArrowIPCError` for malformed IPC; whatever `charge` throws.
    ///
    /// - Parameter heldBytes: the size of the whole received message `data` is a slice of (it stays alive with
    ///   the stored batch); nil when only the header and body are held.
    public mutating func add(_ data: FlightData, heldBytes: Int? = nil, charge: (Int) throws -> Void = { _ in }) throws {
        if data.dataHeader.isEmpty {
            guard data.dataBody.isEmpty else {
                throw NodeError.invalidArgument("\(self.what): a FlightData message has a data_body but no data_header")
            }
            return
        }
        let (slices, sizeOverflow) = data.dataHeader.count.addingReportingOverflow(data.dataBody.count)
        guard !sizeOverflow else { throw NodeError.invalidArgument("\(self.what): message size overflows") }
        let size = max(slices, heldBytes ?? 0)
        try charge(size)
        // A compressed body is validated by decompressing it into scratch memory, which is charged while it exists
        // (and refunded with a negative charge); the kept message stays the compressed bytes received.
        let scratch = try self.decoder.decompressedSize(header: data.dataHeader, body: data.dataBody)
        if scratch > 0 { try charge(scratch) }
        defer { if scratch > 0 { try? charge(-scratch) } }
        if case let .recordBatch(batch) = try self.decoder.decode(header: data.dataHeader, body: data.dataBody) {
            let (rows, overflow) = self.rows.addingReportingOverflow(batch.length)
            guard !overflow else { throw NodeError.invalidArgument("\(self.what): the row count overflows") }
            self.rows = rows
        }
        self.bytes += size
        self.messages.append(StoredMessage(header: data.dataHeader, body: data.dataBody, heldBytes: size))
    }

    /// The schema of the stream.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` when no schema message came.
    public func schema() throws(NodeError) -> Schema {
        guard let schema = self.decoder.schema else {
            throw .invalidArgument("\(self.what): the stream has no schema message")
        }
        return schema
    }
}
