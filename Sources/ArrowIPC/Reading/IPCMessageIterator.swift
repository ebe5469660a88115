/// The IPC messages of a stream or file in stream order (schema, then dictionaries and record batches as
/// written), without interpreting their bodies: for forwarding messages elsewhere (Flight DoPut) without
/// copying them. Files are read through the stream embedded after their magic.
public struct IPCMessageIterator: Sendable {
    private var scanner: MessageScanner
    public let format: IPCFormat

    /// - Throws: ``ArrowIPCError/notArrowIPC(reason:)`` for a file too short to hold its magic.
    public init(_ bytes: ArraySlice<UInt8>, limits: IPCReadLimits = .default) throws(ArrowIPCError) {
        self.format = IPCFormat.detect(bytes)
        if self.format == .file {
            guard bytes.count >= 8 else { throw .notArrowIPC(reason: "a file shorter than its magic") }
        }
        self.scanner = MessageScanner(bytes, position: self.format == .file ? 8 : 0, limits: limits)
    }

    public init(_ bytes: [UInt8], limits: IPCReadLimits = .default) throws(ArrowIPCError) {
        try self.init(bytes[...], limits: limits)
    }

    /// The next message (header decoded, body a view), or nil at the end of the stream.
    public mutating func next() throws(ArrowIPCError) -> EncapsulatedMessage? {
        try self.scanner.next()
    }
}
