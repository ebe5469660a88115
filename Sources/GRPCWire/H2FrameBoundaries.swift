/// Follows the HTTP/2 frame boundaries of the received bytes — the same bytes, in the same order, that nghttp2
/// parses — so the read path knows when the next bytes are the payload of a DATA frame, and can read them straight
/// into the message buffer that waits for them (``MessageDeframer/receiveRoom(charge:)``).
///
/// It only decides where bytes are read to. nghttp2 still parses and validates every byte, and the deframer
/// recognises bytes that are already in place (anything else is copied, as before). Frame lengths are 24-bit, so
/// nothing here can overflow; a peer that breaks the framing is nghttp2's to reject, after which it ignores all
/// input.
struct H2FrameBoundaries {
    /// Bytes of the client connection preface still to pass (servers start with its 24, clients with none).
    private var prefaceLeft: Int
    private var headerFill = 0
    private var length = 0
    private var type: UInt8 = 0
    private var flags: UInt8 = 0
    private var streamID: UInt32 = 0
    /// Payload bytes of the current frame still to come (0 while a frame header is being read).
    private(set) var payloadLeft = 0
    /// The stream whose DATA payload the next `payloadLeft` bytes are: set for unpadded DATA frames only (a padded
    /// payload starts with its pad length and ends with padding, which are not message bytes).
    private(set) var dataStream: Int32?
    /// Whether a large DATA frame came since the last HEADERS frame: the peer sends bulk data (its smaller frames
    /// are often cut by the flow-control window), so reads between payloads are kept short, leaving the bulk of the
    /// next payload to go in place.
    private(set) var largeDataFlow = false

    static let prefaceLength = 24
    static let headerLength = 9
    /// A DATA frame at least this large makes `largeDataFlow`.
    static let largeFrame = 64 << 10
    static let typeData: UInt8 = 0
    static let typeHeaders: UInt8 = 1
    static let flagPadded: UInt8 = 0x08

    init(server: Bool) {
        self.prefaceLeft = server ? Self.prefaceLength : 0
    }

    /// Passes received bytes.
    mutating func advance(_ bytes: UnsafeRawBufferPointer) {
        var i = 0
        let count = bytes.count
        while i < count {
            if self.prefaceLeft > 0 {
                let k = min(self.prefaceLeft, count - i)
                self.prefaceLeft -= k
                i += k
            } else if self.payloadLeft > 0 {
                let k = min(self.payloadLeft, count - i)
                self.advancePayload(k)
                i += k
            } else {
                self.headerByte(bytes[i])
                i += 1
            }
        }
    }

    /// Passes `count` bytes of the current payload (at most `payloadLeft`), read in place.
    mutating func advancePayload(_ count: Int) {
        precondition(count <= self.payloadLeft, "read past the frame's payload")
        self.payloadLeft -= count
        if self.payloadLeft == 0 { self.dataStream = nil }
    }

    private mutating func headerByte(_ b: UInt8) {
        switch self.headerFill {
        case 0, 1, 2: self.length = self.length << 8 | Int(b)
        case 3: self.type = b
        case 4: self.flags = b
        default: self.streamID = self.streamID << 8 | UInt32(b)
        }
        self.headerFill += 1
        guard self.headerFill == Self.headerLength else { return }
        self.headerFill = 0
        self.payloadLeft = self.length
        let stream = Int32(bitPattern: self.streamID & 0x7fff_ffff)
        if self.type == Self.typeData {
            if self.length >= Self.largeFrame { self.largeDataFlow = true }
            let unpadded = self.flags & Self.flagPadded == 0
            self.dataStream = unpadded && self.length > 0 && stream != 0 ? stream : nil
        } else {
            if self.type == Self.typeHeaders { self.largeDataFlow = false }
            self.dataStream = nil
        }
        self.length = 0
        self.streamID = 0
    }
}
