internal import IOLoop

/// Reassembles gRPC length-prefixed messages (`u8 compressed`, `u32 big-endian length`, bytes) from DATA chunks.
///
/// Each message is received into one `[UInt8]`: either copied once from nghttp2's chunks, or read by the socket
/// straight into the buffer's free room (``receiveRoom(charge:)``), which `feed` then recognises in place and
/// copies nothing. The buffer is never sized from the prefix alone: it starts at `min(announced, initialCapacity)`
/// and doubles as bytes arrive (capacity at most `max(initialCapacity, 2 × received)`) until 1/64 of the announced
/// size has arrived; then, as soon as it has, it takes the announced size in one step. So a prefix announcing 2 GiB
/// with nothing behind it costs 64 KiB, a peer must send 1/64 of what it announces before the whole buffer exists,
/// the final array is exactly the message, and the extra copies (and the peak above the message) stay under 1/32
/// of it. Large intermediate buffers would also make glibc trim and refault its heap for every message.
///
/// Each completed message postpones the return of freed memory to the system (``FreedMemory``): a receiving
/// process reuses the pages of the messages it has freed.
///
/// Every capacity step is charged through the `charge` closure before it is allocated (the stream, connection
/// and server budgets); a refused charge ends the message with ``GRPCWireError/receiveBudgetExhausted``.
struct MessageDeframer {
    /// Largest accepted message.
    let maxMessageSize: Int
    /// First capacity of a message buffer (smaller messages get their exact size).
    let initialCapacity: Int
    private var header: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
    private var headerFill = 0
    /// The current message's buffer: `count` is the capacity charged so far; bytes past `filled` are not received
    /// yet.
    private var message: [UInt8] = []
    private var filled = 0
    private var expected = 0
    private var inMessage = false
    /// Capacity of the current buffer that was charged (handed on with the message, or returned by `reset`).
    var charged: Int { self.message.count }
    /// Bytes consumed so far (for error offsets).
    private(set) var offset = 0

    /// The buffer takes the announced size once 1/`finalStepDivisor` of it has arrived.
    static let finalStepDivisor = 64

    init(maxMessageSize: Int, initialCapacity: Int = 64 << 10) {
        self.maxMessageSize = maxMessageSize
        self.initialCapacity = max(1, initialCapacity)
    }

    /// Whether a message is partially received (an error if the stream ends now).
    var hasPartialMessage: Bool { self.headerFill > 0 || self.inMessage }

    /// Bytes of the current partial message received so far.
    var partialBytes: Int { self.inMessage ? self.filled : 0 }

    /// Drops a partial message; returns the charged capacity the caller must release.
    mutating func reset() -> Int {
        let c = self.charged
        self.message = []
        self.filled = 0
        self.inMessage = false
        self.headerFill = 0
        return c
    }

    /// The free room of the current message's buffer: where the next bytes of this stream belong. The receive path
    /// reads a DATA payload straight into it, then feeds those bytes (in place) through nghttp2 to `feed`. A full
    /// buffer takes its next capacity step first, charged like `feed` would; nil when no message is partly received,
    /// or the charge is refused (`feed` then reports it). Valid until the next `feed` or `reset`.
    ///
    /// The room comes with its buffer (`owner`), which the caller holds until nghttp2 has parsed the bytes read
    /// into it: then the memory stays valid whatever the deframer or the message's receiver do meanwhile.
    mutating func receiveRoom(charge: (Int) -> Bool) -> (room: UnsafeMutableRawBufferPointer, owner: [UInt8])? {
        guard self.inMessage else { return nil }
        if self.takesStep {
            guard self.grow(charge: charge) == nil else { return nil }
        }
        let start = self.filled
        let room = self.message.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[start...]) }
        return (room, self.message)
    }

    /// Whether the buffer takes its next capacity step before more bytes go in: it is full, or a sixty-fourth of the
    /// message has arrived and the buffer is not yet the message's size (the earlier the final step, the fewer
    /// bytes it copies).
    private var takesStep: Bool {
        self.filled == self.message.count
            || (self.charged < self.expected && self.filled >= self.expected / Self.finalStepDivisor)
    }

    /// A buffer of `count` bytes whose first `keeping` bytes are those of the current message.
    private func buffer(count: Int, keeping: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let bytes = UnsafeMutableRawBufferPointer(buffer)
            if keeping > 0 {
                self.message.withUnsafeBytes { kept in
                    bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: kept[..<keeping]))
                }
            }
            // The bytes past `filled` are written (by the socket or by `feed`) before anything reads them; fresh
            // pages for them are faulted in at once, not one trap per page inside the kernel's receive copy.
            FreshPages.populate(UnsafeMutableRawBufferPointer(rebasing: bytes[keeping...]))
            initialized = count
        }
    }

    /// The next capacity step of a full buffer: double, or straight to the announced size once a sixty-fourth of it
    /// arrived (so large messages free no large intermediate buffers), charged first. Returns the refused step.
    private mutating func grow(charge: (Int) -> Bool) -> Int? {
        let received = self.filled
        let next =
            received >= self.expected / Self.finalStepDivisor
            ? self.expected : min(self.expected, received &* 2)
        let step = next - self.charged
        guard charge(step) else { return step }
        self.message = self.buffer(count: next, keeping: received)
        return nil
    }

    /// Feeds a chunk.
    /// - Parameters:
    ///   - admit: called with each announced length (after the size check, before any buffering); a status refuses
    ///     the message.
    ///   - charge: asked for each capacity step in bytes; false refuses it.
    ///   - emit: each completed message with the capacity charged for it (now owned by the receiver).
    /// - Throws: `.messageTooLarge` when a prefix announces more than `maxMessageSize`; `.unexpectedCompression`
    ///   when the compressed flag is set (no `grpc-encoding` is ever negotiated); `.messageRefused` when `admit`
    ///   refuses; `.receiveBudgetExhausted` when `charge` refuses.
    mutating func feed(
        _ chunk: UnsafeBufferPointer<UInt8>, admit: (Int) -> GRPCStatus? = { _ in nil },
        charge: (Int) -> Bool = { _ in true }, emit: ([UInt8], Int) -> Void
    ) throws(GRPCWireError) {
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
                    if let refusal = admit(length) {
                        throw .messageRefused(code: refusal.code.rawValue, message: refusal.message)
                    }
                    if length == 0 {
                        emit([], 0)
                    } else {
                        let first = min(length, self.initialCapacity)
                        guard charge(first) else { throw .receiveBudgetExhausted(requested: first) }
                        self.expected = length
                        self.filled = 0
                        self.message = self.buffer(count: first, keeping: 0)
                        self.inMessage = true
                    }
                }
            } else {
                if self.takesStep, let refused = self.grow(charge: charge) {
                    throw .receiveBudgetExhausted(requested: refused)
                }
                let take = min(count - i, self.message.count - self.filled)
                let source = UnsafeRawPointer(chunk.baseAddress! + i)
                let start = self.filled
                // Bytes the socket read into `receiveRoom` arrive here in place: checked without a mutable access,
                // so a buffer the receive path still holds is not copied.
                let inPlace = self.message.withUnsafeBytes { $0.baseAddress! + start == source }
                if !inPlace {
                    self.message.withUnsafeMutableBytes { buffer in
                        (buffer.baseAddress! + start).copyMemory(from: source, byteCount: take)
                    }
                }
                self.filled += take
                i += take
                self.offset += take
                if self.filled == self.expected {
                    FreedMemory.noteChurn()
                    let done = self.message
                    let c = self.charged
                    self.message = []
                    self.filled = 0
                    self.inMessage = false
                    emit(done, c)
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
