// libFuzzer harness for the LZ4 frame decoder, built by scripts/fuzz-compression with
// `swiftc -sanitize=fuzzer,address` over Sources/ArrowCompression. Input: a little-endian u32 whose low
// 20 bits are the declared size, then the frame. Decoding must return exactly that many bytes or throw a
// CompressionError (never trap, hang or allocate beyond the declared size); decoded bytes, and the input's
// own bytes, must survive our encoder and decoder unchanged.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 4 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let declared = (Int(input[0]) | Int(input[1]) << 8 | Int(input[2]) << 16) & 0xF_FFFF
    let frame = Array(input[4...])
    let encoded = LZ4Frame.compress(frame)
    guard let raw = try? LZ4Frame.decompress(encoded, decompressedSize: frame.count), raw == frame else {
        fatalError("our LZ4 frame of the input's \(frame.count) bytes does not round-trip")
    }
    guard let decoded = try? LZ4Frame.decompress(frame, decompressedSize: declared, limit: 1 << 20) else { return 0 }
    guard decoded.count == declared else { fatalError("decoded \(decoded.count) bytes, declared \(declared)") }
    let again = LZ4Frame.compress(decoded)
    guard let back = try? LZ4Frame.decompress(again, decompressedSize: declared), back == decoded else {
        fatalError("our LZ4 frame of \(declared) bytes does not round-trip")
    }
    return 0
}
