/// One IPC message as found in a stream or file: decoded header, raw flatbuffer, and body view.
public struct EncapsulatedMessage: Sendable {
    public let message: Message
    /// The `Message` flatbuffer bytes (with their padding), a view of the input.
    public let metadata: ArraySlice<UInt8>
    /// The body, a view of the input.
    public let body: ArrowBuffer
    /// Byte offset of the message's first prefix byte in the input.
    public let offset: Int
    /// Prefix plus flatbuffer length (what a file `Block.metaDataLength` records).
    public let metadataLength: Int
}

/// Reads encapsulated messages (PROTOCOLS.md §1.1) one after another from bytes in memory,
/// accepting both the current framing (0xFFFFFFFF marker) and the legacy pre-0.15 framing.
struct MessageScanner {
    let bytes: ArraySlice<UInt8>
    let limits: IPCReadLimits
    private(set) var position: Int
    private(set) var reachedEndOfStream = false

    init(_ bytes: ArraySlice<UInt8>, position: Int = 0, limits: IPCReadLimits) {
        self.bytes = bytes
        self.position = position
        self.limits = limits
    }

    private func readInt32(at offset: Int, what: String) throws(ArrowIPCError) -> Int32 {
        guard offset >= 0, offset <= self.bytes.count - 4 else {
            throw .truncated(what: what, offset: offset, needed: 4, available: max(0, self.bytes.count - offset))
        }
        return self.bytes.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: Int32.self)) }
    }

    /// The next message, or nil at the end-of-stream marker or the end of the bytes.
    mutating func next() throws(ArrowIPCError) -> EncapsulatedMessage? {
        guard !self.reachedEndOfStream, self.position < self.bytes.count else { return nil }
        let start = self.position
        var prefix = 4
        var length = try self.readInt32(at: start, what: "message length prefix")
        if length == -1 {
            prefix = 8
            length = try self.readInt32(at: start + 4, what: "message length after the continuation marker")
        }
        if length == 0 {
            self.reachedEndOfStream = true
            self.position = start + prefix
            return nil
        }
        guard length > 0 else {
            throw .invalidMessage(what: "message at byte \(start)", reason: "negative metadata length \(length)")
        }
        let metadataLength = Int(length)
        guard metadataLength <= self.limits.maxMetadataSize else {
            throw .limitExceeded(what: "message metadata size", limit: self.limits.maxMetadataSize, found: metadataLength)
        }
        let metadataStart = start + prefix
        guard metadataLength <= self.bytes.count - metadataStart else {
            throw .truncated(what: "message metadata", offset: metadataStart, needed: metadataLength,
                             available: self.bytes.count - metadataStart)
        }
        let base = self.bytes.startIndex
        let metadata = self.bytes[(base + metadataStart)..<(base + metadataStart + metadataLength)]
        let message = try Message.decode(metadata, limits: self.limits)
        let bodyStart = metadataStart + metadataLength
        // Bodies start 8-byte aligned (writers pad the metadata), so that aligned buffer offsets are aligned.
        guard message.bodyLength == 0 || bodyStart & 7 == 0 else {
            throw .invalidMessage(what: "\(message.header.kind) message at byte \(start)",
                                  reason: "its body starts at byte \(bodyStart), not a multiple of 8 (unpadded metadata)")
        }
        guard message.bodyLength <= self.bytes.count - bodyStart else {
            throw .truncated(what: "\(message.header.kind) body", offset: bodyStart, needed: message.bodyLength,
                             available: self.bytes.count - bodyStart)
        }
        let body = ArrowBuffer(self.bytes[(base + bodyStart)..<(base + bodyStart + message.bodyLength)])
        self.position = bodyStart + message.bodyLength
        return EncapsulatedMessage(message: message, metadata: metadata, body: body, offset: start,
                                   metadataLength: prefix + metadataLength)
    }
}
