/// Reassembles gRPC length-prefixed messages (`u8 compressed`, `u32 big-endian length`, bytes) from DATA chunks.
///
/// Each message is copied once, from nghttp2's chunk into one `[UInt8]` sized from the length prefix.
struct MessageDeframer {
    /// Largest accepted message.
    let maxMessageSize: Int
    private var header: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
    private var headerFill = 0
    private var message: [UInt8] = []
    private var expected = 0
    private var inMessage = false
    /// Bytes consumed so far (for error offsets).
    private(set) var offset = 0

    init(maxMessageSize: Int) { self.maxMessageSize = maxMessageSize }

    /// Whether a message is partially received (an error if the stream ends now).
    var hasPartialMessage: Bool { self.headerFill > 0 || self.inMessage }

    /// Feeds a chunk; calls `emit` with each completed message and its wire size (prefix included).
    /// - Throws: `.messageTooLarge` when a prefix announces more than `maxMessageSize`; `.unexpectedCompression`
    ///   when the compressed flag is set (no `grpc-encoding` is ever negotiated).
    mutating func feed(_ chunk: UnsafeBufferPointer<UInt8>, emit: ([UInt8], Int) -> Void) throws(GRPCWireError) {
        var i = 0
        let count = chunk.count
        while i < count {
            if !self.inMessage {
                let b = chunk[i]
                switch self.headerFill {
                case 0: self.header.0 = b
                case 1: self.header.1 = b
                case 2: self.header.2 = b
                case 3: self.header.3 = b
                default: self.header.4 = b
                }
                self.headerFill += 1
                i += 1
                self.offset += 1
                if self.headerFill == 5 {
                    self.headerFill = 0
                    guard self.header.0 == 0 else { throw .unexpectedCompression(offset: self.offset - 5) }
                    let length =
                        Int(self.header.1) << 24 | Int(self.header.2) << 16 | Int(self.header.3) << 8
                        | Int(self.header.4)
                    guard length <= self.maxMessageSize else {
                        throw .messageTooLarge(length: length, limit: self.maxMessageSize)
                    }
                    if length == 0 {
                        emit([], 5)
                    } else {
                        self.expected = length
                        self.message = []
                        self.message.reserveCapacity(length)
                        self.inMessage = true
                    }
                }
            } else {
                let take = min(count - i, self.expected - self.message.count)
                self.message.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[i..<(i + take)]))
                i += take
                self.offset += take
                if self.message.count == self.expected {
                    let done = self.message
                    self.message = []
                    self.inMessage = false
                    emit(done, done.count + 5)
                }
            }
        }
    }
}

/// Encodes the 5-byte gRPC prefix for an uncompressed message of `length` bytes.
func grpcPrefix(length: Int) -> [UInt8] {
    [
        0, UInt8(truncatingIfNeeded: length >> 24), UInt8(truncatingIfNeeded: length >> 16),
        UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length),
    ]
}
