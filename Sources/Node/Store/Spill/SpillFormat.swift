internal import ArrowIPC

/// How a stored batch is laid out as an Arrow IPC stream file: per message the 8-byte prefix (continuation marker,
/// metadata length), the received `Message` flatbuffer zero-padded to 8 bytes, the body (its `bodyLength`
/// bytes); then the end-of-stream marker. The segments are the received slices themselves plus a few bytes of
/// framing per message, for `writev`; the placements say where each header and body lands in the file, so the
/// stored batch can be rebuilt as slices of the mapped file without reading it again.
struct SpillLayout: Sendable {
    /// What `writev` writes, in order.
    private(set) var segments: [ArraySlice<UInt8>] = []
    /// Per message: the range of its header (as received, without padding) and of its body in the file.
    private(set) var placements: [(header: Range<Int>, body: Range<Int>)] = []
    /// Bytes of the file.
    private(set) var size = 0

    private static let zeros = [UInt8](repeating: 0, count: 8)
    static let endOfStream: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]

    /// An empty layout; ``append(_:)`` each message, then ``finish()``.
    init() {}

    /// The layout of `messages`, finished.
    ///
    /// - Throws: as ``append(_:)``.
    init(_ messages: [StoredMessage]) throws(NodeError) {
        self.segments.reserveCapacity(messages.count * 4 + 1)
        for message in messages { _ = try self.append(message) }
        try self.finish()
    }

    /// Adds one message; returns the segments it adds (what to write next) and their size.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` for a header that does not decode or sizes that overflow (the
    ///   messages were validated when received: neither happens for a stored batch).
    @discardableResult
    mutating func append(_ message: StoredMessage) throws(NodeError) -> (segments: [ArraySlice<UInt8>], bytes: Int) {
        let bodyLength: Int
        do {
            bodyLength = try Message.decode(message.header).bodyLength
        } catch {
            throw .invalidArgument("a stored message header does not decode: \(error)")
        }
        guard bodyLength <= message.body.count else {
            throw .invalidArgument("a stored message body has \(message.body.count) bytes, its header says \(bodyLength)")
        }
        let padding = (8 - message.header.count % 8) % 8
        let (metadataLength, o1) = message.header.count.addingReportingOverflow(padding)
        guard !o1, metadataLength <= Int(Int32.max) else {
            throw .invalidArgument("a stored message header of \(message.header.count) bytes is too large to frame")
        }
        var prefix: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        withUnsafeBytes(of: Int32(metadataLength).littleEndian) { prefix.append(contentsOf: $0) }
        let start = self.size
        let headerStart = start + 8
        let (bodyStart, o2) = headerStart.addingReportingOverflow(metadataLength)
        let (end, o3) = bodyStart.addingReportingOverflow(bodyLength)
        guard !o2, !o3 else { throw .invalidArgument("a stored batch's size overflows") }
        var added: [ArraySlice<UInt8>] = [prefix[...], message.header]
        if padding > 0 { added.append(Self.zeros[0..<padding]) }
        if bodyLength > 0 { added.append(message.body.prefix(bodyLength)) }
        self.segments += added
        self.placements.append((headerStart..<(headerStart + message.header.count), bodyStart..<end))
        self.size = end
        return (added, end - start)
    }

    /// Adds the end-of-stream marker.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` when the size overflows.
    mutating func finish() throws(NodeError) {
        let (total, overflow) = self.size.addingReportingOverflow(Self.endOfStream.count)
        guard !overflow else { throw .invalidArgument("a stored batch's size overflows") }
        self.segments.append(Self.endOfStream[...])
        self.size = total
    }

    /// The stored messages as slices of `file` (the bytes this layout was written as); they hold no memory of
    /// their own (`heldBytes` 0: the pages are the file's).
    func messages(in file: ArraySlice<UInt8>) -> [StoredMessage] {
        let base = file.startIndex
        return self.placements.map { placement in
            StoredMessage(header: file[(base + placement.header.lowerBound)..<(base + placement.header.upperBound)],
                          body: file[(base + placement.body.lowerBound)..<(base + placement.body.upperBound)],
                          heldBytes: 0)
        }
    }
}

/// A batch file read back at start: its messages (slices of the file), schema and rows.
struct SpilledBatchContents {
    let schema: Schema
    let messages: [StoredMessage]
    let rows: Int

    init(schema: Schema, messages: [StoredMessage], rows: Int) {
        self.schema = schema
        self.messages = messages
        self.rows = rows
    }

    /// Checks `file` as a complete IPC stream with the O(buffers) structural checks (every flatbuffer, node and
    /// buffer range against its message; the data itself is not scanned again — it was validated in full when
    /// received): a Schema first, then dictionaries and record batches, the end-of-stream marker last and
    /// nothing after it.
    ///
    /// - Throws: `ArrowIPCError` or ``NodeError/invalidArgument(_:)`` saying what is wrong (truncated, no
    ///   end-of-stream marker, bytes after it, malformed messages).
    init(parsing file: ArraySlice<UInt8>) throws {
        guard file.count >= 8, file.suffix(8).elementsEqual(SpillLayout.endOfStream) else {
            throw NodeError.invalidArgument("the file does not end with the end-of-stream marker (truncated)")
        }
        var iterator = try IPCMessageIterator(file)
        guard iterator.format == .stream else {
            throw NodeError.invalidArgument("the file is not an Arrow IPC stream")
        }
        var decoder = IPCMessageDecoder(options: .default)
        var messages: [StoredMessage] = []
        var end = 0
        while let message = try iterator.next() {
            _ = try decoder.decode(header: message.metadata, body: message.body.bytes)
            messages.append(StoredMessage(header: message.metadata, body: message.body.bytes, heldBytes: 0))
            end = message.offset + message.metadataLength + message.body.count
        }
        // Everything up to the marker was a message: no stream cut short at a message boundary, no data after it.
        guard end == file.count - 8 else {
            throw NodeError.invalidArgument("the stream ends at byte \(end), the file has \(file.count) bytes")
        }
        guard let schema = decoder.schema else { throw NodeError.invalidArgument("the stream has no schema message") }
        self.schema = schema
        self.messages = messages
        self.rows = decoder.rowCount
    }
}
