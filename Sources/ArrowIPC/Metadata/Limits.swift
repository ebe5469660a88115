/// Limits applied while reading untrusted IPC bytes. Exceeding one throws
/// ``ArrowIPCError/limitExceeded(what:limit:found:)``.
public struct IPCReadLimits: Sendable, Equatable {
    /// Deepest allowed nesting of fields (a list of lists of ints has depth 3).
    public var maxNestingDepth: Int
    /// Most fields (at every nesting level, counted over the whole schema) one schema may declare.
    public var maxFieldCount: Int
    /// Largest flatbuffer metadata of one message, in bytes.
    public var maxMetadataSize: Int
    /// Largest body of one message, in bytes.
    public var maxBodySize: Int
    /// Most bytes the buffers of one compressed message may decompress to (their declared uncompressed
    /// lengths are checked against it before anything is allocated).
    public var maxDecompressedSize: Int

    public init(maxNestingDepth: Int = 64, maxFieldCount: Int = 1_000_000, maxMetadataSize: Int = 256 << 20,
                maxBodySize: Int = Int(Int32.max) << 4, maxDecompressedSize: Int = Int(Int32.max) << 2) {
        self.maxNestingDepth = maxNestingDepth
        self.maxFieldCount = maxFieldCount
        self.maxMetadataSize = maxMetadataSize
        self.maxBodySize = maxBodySize
        self.maxDecompressedSize = maxDecompressedSize
    }

    /// The defaults: depth 64, one million fields, 256 MiB metadata, 32 GiB body, 8 GiB decompressed per message.
    public static let `default` = IPCReadLimits()
}
