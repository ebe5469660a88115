/// The framed protocol of `--exec-persistent`: one long-lived child per worker slot answers batch after batch
/// over its stdin and stdout. All integers are little-endian.
///
/// The child is started (`/bin/sh -c COMMAND`) with `VALKEYFLIGHT_PERSISTENT=1` in its environment (and
/// without `VALKEYFLIGHT_KEY/QUEUE/ATTEMPT`, which differ per batch). Then, for each batch:
///
/// Request, ValkeyFlight → child stdin:
/// ```
/// "VFQ1"            4 bytes, magic
/// u32 json_length   ≤ 65536
/// json              {"key":"QUEUE/ID","queue":"QUEUE","id":"ID","attempt":N}  (UTF-8)
/// u64 ipc_length
/// ipc               the batch as an Arrow IPC stream, end-of-stream marker included
/// ```
/// Answer, child stdout → ValkeyFlight:
/// ```
/// "VFR1"            4 bytes, magic
/// u32 status        0 = ok, 1 = error
/// u64 length        ok: ≤ the output limit; error: ≤ 1 MiB
/// payload           ok: the result as an Arrow IPC stream; error: UTF-8 text (becomes last_error)
/// ```
/// The child reads the next request only after it answered the previous one; it writes nothing else on stdout
/// (logs go to stderr; ValkeyFlight keeps the tail of stderr written during a batch). A child that breaks the
/// framing, answers before it read the whole request, exits, or is cancelled (timeout, shutdown) is killed with its
/// process group and replaced by a new one for the next batch; the batch it held fails.
enum PersistentFraming {
    static let requestMagic: [UInt8] = Array("VFQ1".utf8)
    static let answerMagic: [UInt8] = Array("VFR1".utf8)
    /// Magic, status, length.
    static let answerHeaderSize = 16
    /// Longest error text accepted.
    static let maxErrorBytes = 1 << 20

    struct AnswerHeader: Sendable, Equatable {
        let isOK: Bool
        let length: Int
    }

    enum HeaderParse: Sendable, Equatable {
        case header(AnswerHeader)
        case invalid(String)
    }

    /// The request for `input`: a small header array, then the IPC stream's own slices (bodies not copied).
    static func request(for input: ProcessorInput) -> [ArraySlice<UInt8>] {
        let stream = input.streamSegments
        let streamLength = stream.reduce(0) { $0 + $1.count }
        let json = "{\"key\":\(JSONText.quote(input.key.description)),\"queue\":\(JSONText.quote(input.key.queue)),"
            + "\"id\":\(JSONText.quote(input.key.id)),\"attempt\":\(input.attempt)}"
        var header = self.requestMagic
        let jsonBytes = Array(json.utf8)
        self.append(UInt32(jsonBytes.count), to: &header)
        header += jsonBytes
        self.append(UInt64(streamLength), to: &header)
        return [header[...]] + stream
    }

    /// Parses the 16 bytes that start an answer, bounding its length.
    static func parseAnswerHeader(_ bytes: ArraySlice<UInt8>, maxOutputBytes: Int) -> HeaderParse {
        let header = Array(bytes)
        guard header.count == self.answerHeaderSize else {
            return .invalid("an answer header is \(self.answerHeaderSize) bytes, got \(header.count)")
        }
        guard Array(header[0..<4]) == self.answerMagic else {
            return .invalid("the answer starts with \(ProcessorOutput.hex(Array(header[0..<4]))), not \"VFR1\"")
        }
        let status = header[4..<8].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let length = header[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        switch status {
        case 0:
            guard length <= UInt64(maxOutputBytes) else {
                return .invalid("the answer holds \(length) bytes, more than the limit of \(maxOutputBytes)")
            }
            return .header(AnswerHeader(isOK: true, length: Int(length)))
        case 1:
            guard length <= UInt64(self.maxErrorBytes) else {
                return .invalid("the error text has \(length) bytes, more than \(self.maxErrorBytes)")
            }
            return .header(AnswerHeader(isOK: false, length: Int(length)))
        default:
            return .invalid("unknown answer status \(status) (0 = ok, 1 = error)")
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
