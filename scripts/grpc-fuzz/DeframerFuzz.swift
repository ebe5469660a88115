// libFuzzer harness: GRPCWire's gRPC message deframer over arbitrary chunked bytes never traps.
@_cdecl("LLVMFuzzerTestOneInput")
public func deframerFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let split = Int(data[0]) % max(1, size)
    var deframer = MessageDeframer(maxMessageSize: 1 << 16)
    var total = 0
    do {
        try deframer.feed(UnsafeBufferPointer(start: data + 1, count: max(0, split - 1))) { m, _ in total += m.count }
        try deframer.feed(UnsafeBufferPointer(start: data + max(1, split), count: size - max(1, split))) { m, _ in
            total += m.count
        }
    } catch {
        _ = error.description
    }
    return 0
}
