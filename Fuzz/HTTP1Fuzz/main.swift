// libFuzzer harness for the HTTP/1.1 parser, built by scripts/fuzz-http1 with `swiftc -sanitize=fuzzer,address` in
// one module with every file of Sources/HTTP1. For every input:
// - the parser must return a request, nil (incomplete) or throw an HTTP1Error — never trap or hang;
// - a parsed request consumed at least one byte and no more than it was given, and its body is within the limit;
// - the connection state machine, fed the input in small pieces with requests "answered" at once, ends in a
//   bounded number of steps and never holds more than its `maxBuffered` bytes.

@_cdecl("LLVMFuzzerTestOneInput")
public func http1FuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let limits = HTTP1Limits(requestLine: 512, headerBytes: 2048, headerCount: 16, body: 4096)
    var rest = bytes[...]
    var rounds = 0
    while rounds < 64, !rest.isEmpty {
        rounds += 1
        let parsed: (request: HTTP1Request, consumed: Int)?
        do throws(HTTP1Error) {
            parsed = try HTTP1Parser.parse(rest, limits: limits)
        } catch {
            precondition((400...505).contains(error.status))
            _ = HTTP1Response(error: error).serialized(keepAlive: false)
            break
        }
        guard let (request, consumed) = parsed else { break }
        precondition(consumed > 0 && consumed <= rest.count)
        precondition(request.body.count <= limits.body)
        _ = request.queryItems
        _ = request.keepAlive
        rest = rest.dropFirst(consumed)
    }

    let start = ContinuousClock.now
    var connection = HTTP1Connection(limits: limits, now: start)
    var offset = 0
    var steps = 0
    outer: while offset < bytes.count {
        let piece = min(bytes.count - offset, 1 + Int(bytes[offset] % 97))
        var action = bytes[offset..<(offset + piece)].withUnsafeBytes { connection.receive($0, now: start) }
        offset += piece
        while let current = action {
            steps += 1
            precondition(steps < 10_000)
            precondition(connection.bufferedBytes <= connection.maxBuffered)
            switch current {
            case .handle(let request):
                action = connection.responseSent(keepAlive: request.keepAlive, now: start)
            case .refuse, .close:
                break outer
            }
        }
    }
    _ = connection.tick(now: start + .seconds(100))
    return 0
}
