// libFuzzer harness for RESPParser, built by scripts/fuzz-resp with `swiftc -sanitize=fuzzer,address`
// together with the parser's sources. For every input: parsing must return nil, a value, or throw a
// RESPError (never trap); a parsed value must re-encode to bytes that parse back to the same value.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let parser = RESPParser(
        limits: .init(maxBulkLength: 1 << 20, maxElements: 1 << 16, maxDepth: 32, maxLineLength: 1 << 16))
    guard let (value, length) = try? parser.parse(input) else { return 0 }
    guard length > 0, length <= size else { fatalError("parser reported \(length) bytes of \(size)") }
    // Every proper prefix of a complete value must ask for more bytes or be rejected, never yield a value
    // (checked at a few cut points to keep the fuzzer fast).
    for cut in [0, length / 2, length - 1] where cut < length {
        if let shorter = try? parser.parse(UnsafeBufferPointer(rebasing: input[0..<cut])), shorter.length > cut {
            fatalError("prefix of \(cut) bytes parsed as \(shorter.length) bytes")
        }
    }
    if containsNaN(value) { return 0 }
    let encoded = value.encoded
    guard let again = try? RESPParser(limits: parser.limits).parse(encoded) else {
        fatalError("re-encoded value does not parse: \(value.summary)")
    }
    guard again.value == value, again.length == encoded.count else {
        fatalError("round trip changed \(value.summary) into \(again.value.summary)")
    }
    return 0
}

private func containsNaN(_ value: RESPValue) -> Bool {
    switch value {
    case .double(let d): return d.isNaN
    case .array(let v), .set(let v), .push(let v): return v.contains(where: containsNaN)
    case .map(let p): return p.contains { containsNaN($0.key) || containsNaN($0.value) }
    case .attributed(let a, let v): return containsNaN(v) || a.contains { containsNaN($0.key) || containsNaN($0.value) }
    default: return false
    }
}
