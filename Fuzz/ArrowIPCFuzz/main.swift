// libFuzzer harness for ArrowIPC, built by scripts/fuzz-arrowipc with `swiftc -sanitize=fuzzer,address` in one
// module with every file of Sources/ArrowIPC. For every input, as the Flight server and `valkeyflight ipc` read:
// - the stream reader and the file reader with full validation, and the message iterator, must return or throw
//   an ArrowIPCError — never trap, hang or grow without bound;
// - every batch that passed must be readable through the typed accessors, and its re-encoding by our writer
//   must be read back with the same row count (what we accept, we can serve).

@_cdecl("LLVMFuzzerTestOneInput")
public func arrowIPCFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var limits = IPCReadLimits.default
    // Small enough that a hostile input cannot make the harness allocate gigabytes while it runs.
    limits.maxBodySize = 64 << 20
    limits.maxMetadataSize = 16 << 20
    let options = IPCReadOptions(limits: limits, validation: .full)
    if var stream = try? IPCStreamReader(bytes, options: options) {
        var batches: [RecordBatch] = []
        while batches.count < 64, let batch = try? stream.next() { batches.append(batch) }
        exercise(stream.schema, batches, options: options)
    }
    if let file = try? IPCFileReader(bytes, options: options) {
        var batches: [RecordBatch] = []
        for index in 0..<min(file.recordBatchCount, 64) {
            guard let batch = try? file.recordBatch(at: index) else { break }
            batches.append(batch)
        }
        _ = try? file.readAll()
        exercise(file.schema, batches, options: options)
    }
    if var iterator = try? IPCMessageIterator(bytes, limits: limits) {
        var decoder = IPCMessageDecoder(options: options)
        var count = 0
        while count < 256, let message = try? iterator.next() {
            count += 1
            // The Flight path: header and body arrive separately.
            guard (try? decoder.decode(header: message.metadata, body: message.body.bytes)) != nil else { break }
        }
    }
    return 0
}

/// Reads every value of every accepted batch, then writes the batches with our writer and reads them back.
private func exercise(_ schema: Schema, _ batches: [RecordBatch], options: IPCReadOptions) {
    var rows = 0
    for batch in batches {
        rows = rows.addingReportingOverflow(batch.length).partialValue
        for column in batch.columns { touch(column) }
    }
    for format in [IPCFormat.stream, .file] {
        var writer = IPCWriter(schema: schema, format: format)
        do {
            for batch in batches { try writer.write(batch) }
        } catch {
            // The only refusal allowed: a file cannot replace a dictionary that a stream replaced.
            if case .invalidMessage(let what, _) = error, what.hasPrefix("dictionary") { continue }
            fatalError("writer refused an accepted batch: \(error)")
        }
        writer.finish()
        let again = writer.bytes()
        do {
            var read: [RecordBatch]
            switch format {
            case .stream:
                var reader = try IPCStreamReader(again, options: options)
                read = try reader.readAll()
            case .file:
                read = try IPCFileReader(again, options: options).readAll()
            }
            guard read.count == batches.count, zip(read, batches).allSatisfy({ $0.length == $1.length }) else {
                fatalError("re-encoded \(format) has \(read.count) batches, \(batches.count) written")
            }
        } catch {
            fatalError("our own \(format) encoding of accepted batches is rejected: \(error)")
        }
    }
}

/// Reads (a bounded number of) values through the typed accessors; none may trap after full validation.
private func touch(_ array: ArrayData) {
    let limit = min(array.length, 4096)
    for index in 0..<limit { _ = array.isValid(index) }
    if let dictionary = array.dictionary {
        for index in 0..<min(dictionary.chunkCount, 64) { touch(dictionary.chunk(index)) }
        _ = dictionary.locate(dictionary.length - 1)
    }
    for child in array.children { touch(child) }
    guard array.encoding == nil else { return }
    switch array.type {
    case .binary, .largeBinary, .utf8, .largeUtf8, .binaryView, .utf8View:
        guard let column = try? array.binaries() else { fatalError("binaries() rejected a validated column") }
        for index in 0..<limit { _ = column[index] }
    case .bool:
        if let column = try? array.bools() { for index in 0..<limit { _ = column[index] } }
    case .int(let type):
        switch (type.bitWidth, type.isSigned) {
        case (8, true): read(array, Int8.self, limit)
        case (16, true): read(array, Int16.self, limit)
        case (32, true): read(array, Int32.self, limit)
        case (64, true): read(array, Int64.self, limit)
        case (8, false): read(array, UInt8.self, limit)
        case (16, false): read(array, UInt16.self, limit)
        case (32, false): read(array, UInt32.self, limit)
        default: read(array, UInt64.self, limit)
        }
    case .floatingPoint(.double): read(array, Double.self, limit)
    case .floatingPoint(.single): read(array, Float.self, limit)
    default: break
    }
}

private func read<Value: ArrowPrimitive>(_ array: ArrayData, _: Value.Type, _ limit: Int) {
    guard let column = try? array.values(as: Value.self) else { return }
    for index in 0..<limit { _ = column[index] }
}
