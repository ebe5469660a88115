// libFuzzer harness for the DoPut path of a Flight node, built by scripts/fuzz-flight-doput with
// `swiftc -sanitize=fuzzer,address` from the Sources of FlightProto and ArrowIPC (each its own module) and the
// node's receive path: Sources/Node/Store (the batch store) and Sources/Node/Services/BatchIngest.swift, with
// NodeError.swift beside this file standing in for the node's (whose gRPC mapping needs GRPCWire). The RPC
// plumbing is left out: the input is the sequence of gRPC messages a DoPut call carries, and `doPut` below does
// what FlightStoreService.receive does with them — FlightData decoding, the descriptor's key, the store's
// reservation, BatchIngest (IPCMessageDecoder with full validation), commit — then serves the stored batch as
// DoGet does and reads it back as a client would.
//
// Input: either gRPC-framed messages (each `flag u8` = 0, `length u32` big-endian, FlightData protobuf), or (first
// byte neither 0 nor 1) an IPC stream that is cut into its messages and sent as FlightData, the first carrying
// the descriptor. With FLIGHT_DOPUT_SEED_DIR set, the second form also writes its framed equivalent there
// (how scripts/fuzz-flight-doput turns the IPC fixtures into protobuf-level seeds).
//
// Must never trap, hang or grow: every input ends stored-and-served or rejected with an error, and then the
// store holds nothing (reservations cancelled, the stored batch deleted).

internal import ArrowIPC
internal import FlightProto
internal import Glibc
internal import Synchronization

private let store = BatchStore(maxMemory: 256 << 20)
private let seedDirectory: String? = getenv("FLIGHT_DOPUT_SEED_DIR").map { String(cString: $0) }
private let seedCount = Mutex(0)

enum DoPutError: Error {
    case rejected(String)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func flightDoPutFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let messages: [ArraySlice<UInt8>]
    if first <= 1 {
        messages = deframe(bytes)
    } else {
        messages = flightData(fromStream: bytes)
        if let seedDirectory { writeSeed(messages, to: seedDirectory) }
    }
    run(messages)
    let usage = store.usage
    guard usage.batches == 0, usage.storedBytes == 0, usage.reservedBytes == 0 else {
        fatalError("the store kept \(usage) after a DoPut")
    }
    return 0
}

/// gRPC length-prefixed messages, as many as the bytes hold (a truncated last one is dropped, as a peer
/// resetting the stream would be).
private func deframe(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    var messages: [ArraySlice<UInt8>] = []
    var index = 0
    while bytes.count - index >= 5, messages.count < 512 {
        let length = Int(bytes[index + 1]) << 24 | Int(bytes[index + 2]) << 16 | Int(bytes[index + 3]) << 8 | Int(bytes[index + 4])
        guard length <= bytes.count - index - 5 else { break }
        messages.append(bytes[(index + 5)..<(index + 5 + length)])
        index += 5 + length
    }
    return messages
}

/// The FlightData messages our client sends for an IPC stream: header and body of each message, the
/// descriptor `["fuzz", "batch"]` on the first.
private func flightData(fromStream bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    guard var iterator = try? IPCMessageIterator(bytes) else { return [] }
    var messages: [ArraySlice<UInt8>] = []
    while messages.count < 512, let message = try? iterator.next() {
        var data = FlightData()
        if messages.isEmpty { data.flightDescriptor = FlightDescriptor(path: ["fuzz", "batch"]) }
        data.dataHeader = message.metadata
        data.dataBody = message.body.bytes
        messages.append(data.serializedBytes()[...])
    }
    return messages
}

private func writeSeed(_ messages: [ArraySlice<UInt8>], to directory: String) {
    var framed: [UInt8] = []
    for message in messages {
        framed.append(0)
        for shift in [24, 16, 8, 0] { framed.append(UInt8(truncatingIfNeeded: message.count >> shift)) }
        framed.append(contentsOf: message)
    }
    let number = seedCount.withLock { count in
        count += 1
        return count
    }
    guard let file = fopen("\(directory)/doput-\(number)", "wb") else { return }
    _ = framed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
}

private func run(_ messages: [ArraySlice<UInt8>]) {
    do {
        let stored = try doPut(messages)
        serve(stored)
        guard store.delete(stored.key) else { fatalError("stored batch \(stored.key) is gone") }
    } catch {
        _ = "\(error)"
    }
}

/// What FlightStoreService.receive does with the request messages.
private func doPut(_ requests: [ArraySlice<UInt8>]) throws -> StoredBatch {
    var requests = requests.makeIterator()
    guard let firstBytes = requests.next() else { throw DoPutError.rejected("empty DoPut") }
    let first = try FlightData(serializedBytes: firstBytes)
    guard let descriptor = first.flightDescriptor, descriptor.type == .path else { throw DoPutError.rejected("no PATH descriptor") }
    let key = descriptor.path.count == 1 ? try BatchKey(queue: descriptor.path[0], id: "generated")
        : try BatchKey(path: descriptor.path)
    let reservation = try store.reserve(key)
    do {
        var ingest = BatchIngest(what: "batch \(key)")
        var next: FlightData? = first
        while let data = next {
            try ingest.add(data) { size in try store.grow(reservation, by: size) }
            next = try requests.next().map { bytes throws(FlightProtoError) in try FlightData(serializedBytes: bytes) }
        }
        return store.commit(reservation, schema: try ingest.schema(), messages: ingest.messages, rows: ingest.rows)
    } catch {
        store.cancel(reservation)
        throw error
    }
}

/// DoGet: the stored messages as FlightData; a client decodes them again, and as an IPC stream they read back
/// with the same rows. Anything the store accepted must be servable.
private func serve(_ batch: StoredBatch) {
    var client = IPCMessageDecoder(options: .untrusted)
    var stream: [UInt8] = []
    for message in batch.messages {
        let parts = FlightData.encodedParts(dataHeader: message.header, body: [message.body], bodyLength: message.body.count)
        let wire = parts.flatMap { $0 }
        guard let data = try? FlightData(serializedBytes: wire) else { fatalError("DoGet message does not decode") }
        do {
            _ = try client.decode(header: data.dataHeader, body: data.dataBody)
        } catch {
            fatalError("a client rejects what the store accepted: \(error)")
        }
        guard let header = try? Message.decode(data.dataHeader) else { fatalError("stored header does not decode") }
        stream += EncodedMessage.frame(header: data.dataHeader) + Array(data.dataBody.prefix(header.bodyLength))
    }
    guard client.rowCount == batch.rows else { fatalError("served \(client.rowCount) rows, stored \(batch.rows)") }
    do {
        var reader = try IPCStreamReader(stream, options: .untrusted)
        _ = try reader.readAll()
        guard reader.rowCount == batch.rows else { fatalError("stream of the stored batch has \(reader.rowCount) rows") }
    } catch {
        fatalError("the stored batch as an IPC stream is rejected: \(error)")
    }
}
