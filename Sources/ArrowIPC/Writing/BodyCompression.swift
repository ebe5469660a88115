internal import ArrowCompression

/// Options for ``IPCWriter``: body compression (Arrow's BodyCompression, one frame per buffer).
public struct IPCWriteOptions: Sendable, Equatable {
    /// The codec for record batch and dictionary bodies; nil writes them uncompressed (zero-copy).
    public var compression: CompressionCodec?
    /// The codec's level (ZSTD; LZ4 has one level); nil is the codec's default.
    public var level: Int?

    public init(compression: CompressionCodec? = nil, level: Int? = nil) {
        self.compression = compression
        self.level = level
    }

    /// Uncompressed bodies.
    public static let `default` = IPCWriteOptions()
}

extension CompressionCodec {
    /// One body buffer in Arrow's compressed framing, as slices: the `int64` uncompressed length and the
    /// frame, or −1 and the buffer's own bytes when compressing would not make it smaller (as Arrow C++
    /// does with `min_space_savings`).
    func compressBuffer(_ buffer: ArrowBuffer, level: Int?) -> (prefix: [UInt8], payload: ArraySlice<UInt8>) {
        let frame: [UInt8]
        switch self {
        case .lz4Frame: frame = LZ4Frame.compress(buffer.bytes)
        case .zstd: frame = Zstd.compress(buffer.bytes, level: level ?? 1)
        }
        if frame.count >= buffer.count {
            return (Self.prefix(-1), buffer.bytes)
        }
        return (Self.prefix(Int64(buffer.count)), frame[...])
    }

    private static func prefix(_ value: Int64) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}
