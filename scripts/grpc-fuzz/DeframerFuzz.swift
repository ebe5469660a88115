// libFuzzer harness: GRPCWire's receive path over arbitrary bytes never traps, and its in-place reads agree with
// copying.
//
// The input is a received HTTP/2 byte stream (byte 0 picks the role and the read sizes). `H2FrameBoundaries` follows
// it in reads of varying size, as H2Connection does; the DATA payload bytes of stream 1 (found by this harness's own
// frame walk, as nghttp2 would deliver them) go to two deframers: one is fed by copy only, the other takes every read
// it can in place (bytes written into `receiveRoom`, then fed from there). The tracker must agree with the frame walk
// wherever a read goes in place, and both deframers must emit the same messages, fail at the same byte with the same
// error, and hand on every capacity they charged.
@_cdecl("LLVMFuzzerTestOneInput")
public func deframerFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let server = data[0] & 1 == 1
    var seed = UInt64(data[0]) | 1
    let bytes = UnsafeBufferPointer(start: data + 1, count: size - 1)

    // Where stream 1's unpadded DATA payloads lie (what nghttp2 would hand to the deframer).
    var payloadEnd = [Int](repeating: -1, count: bytes.count)
    var at = server ? 24 : 0
    while at + 9 <= bytes.count {
        let length = Int(bytes[at]) << 16 | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2])
        let stream = (UInt32(bytes[at + 5]) << 24 | UInt32(bytes[at + 6]) << 16 | UInt32(bytes[at + 7]) << 8
            | UInt32(bytes[at + 8])) & 0x7fff_ffff
        let data = bytes[at + 3] == 0 && bytes[at + 4] & 0x08 == 0 && stream == 1
        at += 9
        let end = min(bytes.count, at + length)
        if data { for i in at..<end { payloadEnd[i] = at + length } }
        at += length
    }

    var tracker = H2FrameBoundaries(server: server)
    var copying = MessageDeframer(maxMessageSize: 1 << 16, initialCapacity: 64)
    var inPlace = MessageDeframer(maxMessageSize: 1 << 16, initialCapacity: 64)
    var copied: [[UInt8]] = []
    var placed: [[UInt8]] = []
    var charged = (copying: 0, inPlace: 0)
    var released = (copying: 0, inPlace: 0)
    var failure: (copying: String?, inPlace: String?) = (nil, nil)

    /// Feeds stream 1's payload bytes of `range` to the copying deframer (and to the other one unless it got them
    /// in place already).
    func deliver(_ range: Range<Int>, room: UnsafeMutableRawBufferPointer?) {
        var i = range.lowerBound
        while i < range.upperBound {
            guard payloadEnd[i] >= 0 else {
                i += 1
                continue
            }
            var j = i
            while j < range.upperBound && payloadEnd[j] >= 0 { j += 1 }
            let chunk = UnsafeBufferPointer(rebasing: bytes[i..<j])
            if failure.copying == nil {
                do {
                    try copying.feed(chunk, charge: { charged.copying += $0; return true }) { m, c in
                        copied.append(m)
                        released.copying += c
                    }
                } catch { failure.copying = "\(error)" }
            }
            if failure.inPlace == nil {
                let source = room.map { UnsafeBufferPointer(rebasing: $0.bindMemory(to: UInt8.self)[..<(j - i)]) }
                do {
                    try inPlace.feed(source ?? chunk, charge: { charged.inPlace += $0; return true }) { m, c in
                        placed.append(m)
                        released.inPlace += c
                    }
                } catch { failure.inPlace = "\(error)" }
            }
            i = j
        }
    }

    var position = 0
    while position < bytes.count {
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let want = 1 + Int(seed >> 33) % 700
        if tracker.dataStream == 1 {
            precondition(payloadEnd[position] == position + tracker.payloadLeft, "tracker: payload at \(position)")
        }
        if tracker.dataStream == 1, failure.inPlace == nil,
            let target = inPlace.receiveRoom(charge: { charged.inPlace += $0; return true })
        {
            let n = min(want, tracker.payloadLeft, target.room.count, bytes.count - position)
            // The socket's read into the room.
            target.room.baseAddress!.copyMemory(from: bytes.baseAddress! + position, byteCount: n)
            tracker.advancePayload(n)
            withExtendedLifetime(target.owner) { deliver(position..<(position + n), room: target.room) }
            position += n
        } else {
            let n = min(want, bytes.count - position)
            tracker.advance(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[position..<(position + n)])))
            deliver(position..<(position + n), room: nil)
            position += n
        }
    }
    precondition(copied == placed, "in-place and copied messages differ")
    precondition(failure.copying == failure.inPlace, "errors differ: \(failure)")
    if failure.copying == nil {
        precondition(charged.copying - released.copying == copying.charged, "copying deframer lost a charge")
        precondition(charged.inPlace - released.inPlace == inPlace.charged, "in-place deframer lost a charge")
    }
    return 0
}
