internal import ArrowCompression

/// Decompresses the body buffers of a compressed RecordBatch (Arrow's BodyCompression, method BUFFER):
/// each buffer is an `int64` uncompressed length followed by an LZ4 frame or a Zstandard frame, or by the
/// raw bytes when the length is −1; an empty buffer may have no prefix.
///
/// This is the one copy of a compressed read: each compressed buffer is decompressed into a new array
/// that the loaded columns view. A −1 buffer stays a view of the body (no copy).
struct BodyDecompressor {
    let codec: CompressionCodec
    /// Most bytes all buffers of one message may decompress to (``IPCReadLimits/maxDecompressedSize``).
    let limit: Int
    private(set) var used = 0

    init(codec: CompressionCodec, limit: Int) {
        self.codec = codec
        self.limit = limit
    }

    /// The largest output one compressed byte can declare: LZ4 sequences expand at most 255×, a Zstandard
    /// RLE block (4 bytes) at most to 128 KiB. A larger declared length cannot be honest; it is rejected
    /// before anything is allocated.
    var maxRatio: Int { self.codec == .lz4Frame ? 255 : 32_768 }

    /// The declared uncompressed length of `buffer` (nil for an empty buffer, −1 for stored raw bytes).
    static func declaredLength(_ buffer: ArrowBuffer, what: @autoclosure () -> String) throws(ArrowIPCError) -> Int? {
        guard buffer.count > 0 else { return nil }
        guard buffer.count >= 8 else {
            throw .invalidMessage(what: what(), reason: "compressed buffer of \(buffer.count) bytes lacks its 8-byte uncompressed length")
        }
        let declared = buffer.load(Int64.self, at: 0)
        guard declared >= -1, declared <= Int64(Int.max) else {
            throw .invalidMessage(what: what(), reason: "uncompressed length \(declared) is negative")
        }
        return Int(declared)
    }

    /// The uncompressed bytes of `buffer`.
    ///
    /// - Throws: ``ArrowIPCError/limitExceeded(what:limit:found:)`` when the declared lengths of the message
    ///   exceed `limit`; ``ArrowIPCError/decompressionFailed(buffer:codec:reason:)`` for a missing prefix, a
    ///   length the input cannot produce, a malformed frame, or a frame decoding to another length.
    mutating func decompress(_ buffer: ArrowBuffer, what: @autoclosure () -> String) throws(ArrowIPCError) -> ArrowBuffer {
        guard let declared = try Self.declaredLength(buffer, what: what()) else { return .empty }
        let payload = buffer.slice(offset: 8, count: buffer.count - 8)
        if declared == -1 { return payload }
        let (total, overflow) = self.used.addingReportingOverflow(declared)
        guard !overflow, total <= self.limit else {
            throw .limitExceeded(what: "decompressed size of \(what()) (\(self.codec))", limit: self.limit,
                                 found: overflow ? Int.max : total)
        }
        let (bound, boundOverflow) = payload.count.multipliedReportingOverflow(by: self.maxRatio)
        guard boundOverflow || declared <= bound + 64 else {
            throw .decompressionFailed(buffer: what(), codec: self.codec.description,
                                       reason: "\(payload.count) compressed bytes cannot hold the declared \(declared) bytes")
        }
        self.used = total
        do {
            switch self.codec {
            case .lz4Frame:
                return ArrowBuffer(try LZ4Frame.decompress(payload.bytes, decompressedSize: declared, limit: self.limit))
            case .zstd:
                return ArrowBuffer(try Zstd.decompress(payload.bytes, decompressedSize: declared, limit: self.limit))
            }
        } catch {
            throw .decompressionFailed(buffer: what(), codec: self.codec.description, reason: error.description)
        }
    }
}

extension IPCMessageDecoder {
    /// The bytes decoding this message would decompress into (0 for an uncompressed message): the sum of
    /// its buffers' declared uncompressed lengths, so a caller can reserve that scratch memory first.
    ///
    /// - Throws: ``ArrowIPCError`` for malformed metadata, buffers outside the body, or a missing prefix.
    public func decompressedSize(header: ArraySlice<UInt8>, body: ArraySlice<UInt8>) throws(ArrowIPCError) -> Int {
        let message = try Message.decode(header, limits: self.options.limits)
        let batch: RecordBatchHeader
        switch message.header {
        case let .recordBatch(header): batch = header
        case let .dictionaryBatch(header): batch = header.data
        case .schema: return 0
        }
        guard batch.compression != nil else { return 0 }
        let bytes = ArrowBuffer(body.prefix(message.bodyLength))
        var total = 0
        for (index, location) in batch.buffers.enumerated() {
            guard location.offset <= bytes.count, location.length <= bytes.count - location.offset else {
                throw .invalidMessage(what: "RecordBatch.buffers[\(index)]", reason: "outside the body of \(bytes.count) bytes")
            }
            let buffer = bytes.slice(offset: location.offset, count: location.length)
            guard let declared = try BodyDecompressor.declaredLength(buffer, what: "RecordBatch.buffers[\(index)]"),
                  declared >= 0 else { continue }
            let (sum, overflow) = total.addingReportingOverflow(declared)
            guard !overflow else {
                throw .limitExceeded(what: "decompressed size of a message", limit: Int.max, found: Int.max)
            }
            total = sum
        }
        return total
    }
}

extension RecordBatchHeader {
    /// The bytes this batch's buffers hold once decompressed: each compressed buffer's declared length,
    /// a −1 buffer's raw bytes, an uncompressed buffer's length (padding excluded).
    ///
    /// - Throws: ``ArrowIPCError`` for a buffer outside `body` or a compressed buffer without its prefix.
    public func uncompressedBufferBytes(body: ArrowBuffer) throws(ArrowIPCError) -> Int {
        var total = 0
        for (index, location) in self.buffers.enumerated() {
            guard location.offset <= body.count, location.length <= body.count - location.offset else {
                throw .invalidMessage(what: "RecordBatch.buffers[\(index)]", reason: "outside the body of \(body.count) bytes")
            }
            var size = location.length
            if self.compression != nil {
                let buffer = body.slice(offset: location.offset, count: location.length)
                let declared = try BodyDecompressor.declaredLength(buffer, what: "RecordBatch.buffers[\(index)]")
                size = declared.map { $0 == -1 ? location.length - 8 : $0 } ?? 0
            }
            let (sum, overflow) = total.addingReportingOverflow(size)
            guard !overflow else { throw .limitExceeded(what: "uncompressed body size", limit: Int.max, found: Int.max) }
            total = sum
        }
        return total
    }
}
