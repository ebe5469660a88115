import ArrowCompression
import ArrowIPC
import Foundation
import IOLoop

// Our side of scripts/bench-compression: per-buffer LZ4 frame and ZSTD encode/decode throughput over every
// buffer of an Arrow IPC stream, then whole-stream IPC writes and reads with body compression.
//   CompressionBenchmark TABLE.arrows [ROUNDS]
// Prints one line per measurement: `ours CODEC OPERATION GB/s BYTES` (BYTES = compressed size).

// glibc as every valkeyflight process tunes it (FreedMemory.retain(), called by each event loop): freed buffers of up
// to 32 MiB stay in the arenas for the next ones, as pyarrow's own allocator keeps them. BENCH_MALLOC=default keeps
// glibc's defaults, where every large buffer is a fresh mmap whose pages fault in and are zeroed.
let mallocPolicy = ProcessInfo.processInfo.environment["BENCH_MALLOC"] == "default" ? "default" : "retained"
if mallocPolicy == "retained" { FreedMemory.retain() }
let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    print("usage: CompressionBenchmark TABLE.arrows [ROUNDS]")
    exit(2)
}
let sizes = arguments[1] == "--sizes"
let path = sizes ? arguments[2] : arguments[1]
let rounds = !sizes && arguments.count > 2 ? Int(arguments[2]) ?? 3 : 3
let input = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
var reader = try IPCStreamReader(input)
let batches = try reader.readAll()
let schema = reader.schema
if sizes {
    BufferSizes.print(batches[0])
    exit(0)
}

func collect(_ array: ArrayData, into buffers: inout [ArrowBuffer]) {
    for buffer in array.buffers where buffer.count > 0 { buffers.append(buffer) }
    for child in array.children { collect(child, into: &buffers) }
}
var buffers: [ArrowBuffer] = []
for batch in batches { for column in batch.columns { collect(column, into: &buffers) } }
let total = buffers.reduce(0) { $0 + $1.count }

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let clock = ContinuousClock()
    var best = Double.infinity
    for _ in 0..<rounds {
        let start = clock.now
        try body()
        let elapsed = clock.now - start
        best = min(best, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
    return best
}

func report(_ codec: String, _ operation: String, _ time: Double, _ bytes: Int) {
    print("ours \(codec) \(operation) \(String(format: "%.3f", Double(total) / time / 1e9)) \(bytes)")
}

print("ours table \(batches.count) batches \(buffers.count) buffers \(total) bytes, glibc malloc \(mallocPolicy)")
let only = ProcessInfo.processInfo.environment["BENCH_CODEC"]
for (name, codec) in [("lz4", CompressionCodec.lz4Frame), ("zstd", .zstd)] where only == nil || only == name {
    var frames: [[UInt8]] = []
    let encode = seconds {
        frames = buffers.map { buffer in
            codec == .lz4Frame ? LZ4Frame.compress(buffer.bytes) : Zstd.compress(buffer.bytes, level: 1)
        }
    }
    let compressed = frames.reduce(0) { $0 + $1.count }
    report(name, "encode", encode, compressed)
    let decode = try seconds {
        for (frame, buffer) in zip(frames, buffers) {
            let out = codec == .lz4Frame
                ? try LZ4Frame.decompress(frame, decompressedSize: buffer.count)
                : try Zstd.decompress(frame, decompressedSize: buffer.count)
            precondition(out.count == buffer.count)
        }
    }
    report(name, "decode", decode, compressed)
    // Whole stream through the IPC writer and reader.
    var written: [UInt8] = []
    let ipcWrite = try seconds {
        var writer = IPCWriter(schema: schema, format: .stream, options: IPCWriteOptions(compression: codec))
        for batch in batches { try writer.write(batch) }
        writer.finish()
        written = writer.bytes()
    }
    report(name, "ipc-write", ipcWrite, written.count)
    let ipcRead = try seconds {
        var reader = try IPCStreamReader(written)
        var rows = 0
        while let batch = try reader.next() { rows += batch.length }
        precondition(rows == batches.reduce(0) { $0 + $1.length })
    }
    report(name, "ipc-read", ipcRead, written.count)
}
