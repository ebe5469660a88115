// Reads an Arrow IPC stream into memory and times our reader and writer on it.
// Usage: ArrowIPCBenchmark FILE [REPETITIONS] [open]   ("open" times only opening, for profiling)
// Prints one JSON object per measurement: {"impl":"valkeyflight","op":…,"seconds":…,"bytes":…}.
import ArrowIPC
import Glibc

func readFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { fatalError("cannot open \(path)") }
    defer { close(fd) }
    var info = stat()
    fstat(fd, &info)
    var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
    var done = 0
    while done < bytes.count {
        let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
        guard got > 0 else { fatalError("read failed") }
        done += got
    }
    return bytes
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

func report(_ op: String, _ time: Double, _ bytes: Int, _ extra: String = "") {
    print("{\"impl\":\"valkeyflight\",\"op\":\"\(op)\",\"seconds\":\(time),\"bytes\":\(bytes)\(extra)}")
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    print("usage: ArrowIPCBenchmark FILE [REPETITIONS]")
    exit(2)
}
let input = readFile(arguments[1])
let repetitions = arguments.count > 2 ? Int(arguments[2]) ?? 5 : 5
if arguments.count > 3, arguments[3] == "open" {
    for _ in 0..<repetitions {
        let time = try seconds {
            var reader = try IPCStreamReader(input)
            _ = try reader.readAll()
        }
        report("open", time, input.count)
    }
    exit(0)
}

for _ in 0..<repetitions {
    // memcpy of the whole stream: the yardstick for "opening costs O(buffers), not O(bytes)".
    var copy = [UInt8](repeating: 0, count: input.count)
    let memcpyTime = seconds {
        copy.withUnsafeMutableBytes { destination in
            input.withUnsafeBytes { source in _ = memcpy(destination.baseAddress!, source.baseAddress!, source.count) }
        }
    }
    report("memcpy", memcpyTime, input.count)

    // Open: every message decoded, every buffer bounds-checked, all batches as views of `input`.
    var batches: [RecordBatch] = []
    var schema = Schema([])
    let openTime = try seconds {
        var reader = try IPCStreamReader(input)
        batches = try reader.readAll()
        schema = reader.schema
    }
    let rows = batches.reduce(0) { $0 + $1.length }
    report("open", openTime, input.count, ",\"batches\":\(batches.count),\"rows\":\(rows)")

    // Full validation of the data (offsets, UTF-8, ...).
    let validateTime = try seconds { for batch in batches { try batch.validateFull() } }
    report("validate_full", validateTime, input.count)

    // Write: the zero-copy writer's output (header bytes + slices of the batches' buffers).
    var segments: [ArraySlice<UInt8>] = []
    let writeTime = try seconds {
        var writer = IPCWriter(schema: schema, format: .stream)
        for batch in batches { try writer.write(batch) }
        writer.finish()
        segments = writer.segments
    }
    let written = segments.reduce(0) { $0 + $1.count }
    report("write_segments", writeTime, written, ",\"segments\":\(segments.count)")

    // Write into one contiguous buffer (what an in-memory output stream holds): segments copied once.
    let contiguousTime = seconds {
        var writer = IPCWriter(schema: schema, format: .stream)
        for batch in batches { try? writer.write(batch) }
        writer.finish()
        var output = [UInt8](repeating: 0, count: writer.byteCount)
        output.withUnsafeMutableBytes { destination in
            var offset = 0
            for segment in writer.segments {
                segment.withUnsafeBytes { source in
                    _ = memcpy(destination.baseAddress! + offset, source.baseAddress!, source.count)
                }
                offset += segment.count
            }
        }
        precondition(output.count == written)
    }
    report("write_contiguous", contiguousTime, written)
    precondition(copy.count == input.count)
}
