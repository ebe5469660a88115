// libFuzzer harness: FlightProto's reader over arbitrary bytes must throw FlightProtoError or succeed, never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func protoFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var reader = ProtoReader(bytes)
    var varints: [UInt64] = []
    var f64: [UInt64] = []
    var f32: [UInt32] = []
    do {
        while let key = try reader.nextField() {
            switch key.number % 8 {
            case 0: _ = try reader.readString(key)
            case 1: _ = try reader.readInt32(key)
            case 2: try reader.readPackedVarints(key, into: &varints)
            case 3: try reader.readPackedFixed64(key, into: &f64)
            case 4: try reader.readPackedFixed32(key, into: &f32)
            case 5: _ = try reader.readSInt64(key)
            case 6: _ = try reader.readBytes(key)
            default: try reader.skip(key)
            }
        }
    } catch {
        _ = error.description
    }
    return 0
}
