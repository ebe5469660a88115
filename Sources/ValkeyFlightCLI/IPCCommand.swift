internal import Node
internal import FlightRPC
public import ArgumentParser
internal import ArrowIPC

/// `valkeyflight ipc …`: look at and re-encode Arrow IPC streams and files with our reader and writer.
struct IPCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ipc",
        abstract: "Inspect and convert Arrow IPC streams and files.",
        subcommands: [IPCInspectCommand.self, IPCConvertCommand.self]
    )
}

/// What `ipc inspect` reports about one stream or file.
struct IPCSummary {
    var format: IPCFormat
    var schema: Schema
    var recordBatches = 0
    var dictionaryBatches = 0
    var rows = 0
    var bytes = 0
    /// Per record batch: rows, codec (nil = uncompressed), body bytes as stored, buffer bytes uncompressed.
    var batchBodies: [(rows: Int, codec: CompressionCodec?, bodyBytes: Int, uncompressedBytes: Int)] = []

    /// Reads (with full validation) every batch of `bytes` and counts them.
    static func read(_ bytes: [UInt8]) throws(ArrowIPCError) -> (IPCSummary, [RecordBatch]) {
        let format = IPCFormat.detect(bytes)
        var batches: [RecordBatch]
        var summary: IPCSummary
        switch format {
        case .stream:
            var reader = try IPCStreamReader(bytes, options: .untrusted)
            batches = try reader.readAll()
            summary = IPCSummary(format: format, schema: reader.schema)
            summary.dictionaryBatches = reader.dictionaryBatchCount
        case .file:
            let reader = try IPCFileReader(bytes, options: .untrusted)
            batches = try reader.readAll()
            summary = IPCSummary(format: format, schema: reader.schema)
            summary.dictionaryBatches = reader.dictionaryBatchCount
        }
        summary.recordBatches = batches.count
        summary.rows = batches.reduce(0) { $0 + $1.length }
        summary.bytes = bytes.count
        var messages = try IPCMessageIterator(bytes)
        while let encapsulated = try messages.next() {
            guard case let .recordBatch(header) = encapsulated.message.header else { continue }
            summary.batchBodies.append((header.length, header.compression, encapsulated.message.bodyLength,
                                        try header.uncompressedBufferBytes(body: encapsulated.body)))
        }
        return (summary, batches)
    }

    var text: String {
        var lines = ["format: \(self.format.rawValue)", "schema (\(self.schema.fields.count) fields):"]
        for field in self.schema.fields {
            lines.append("  \(field.name): \(field.typeDescription)\(field.nullable ? "" : " not null")")
        }
        for entry in self.schema.metadata {
            lines.append("  metadata: \(entry.keyString)=\(entry.valueString)")
        }
        lines.append("record batches: \(self.recordBatches)")
        lines.append("dictionary batches: \(self.dictionaryBatches)")
        lines.append("rows: \(self.rows)")
        lines.append("bytes: \(self.bytes)")
        for (index, batch) in self.batchBodies.enumerated() {
            lines.append("  batch \(index): rows=\(batch.rows) codec=\(batch.codec?.description ?? "none") "
                         + "body=\(batch.bodyBytes) uncompressed=\(batch.uncompressedBytes)")
        }
        return lines.joined(separator: "\n")
    }

    var json: String {
        let fields = self.schema.fields.map { field in
            "{\"name\":\(JSONText.quote(field.name)),\"type\":\(JSONText.quote(field.typeDescription)),\"nullable\":\(field.nullable)}"
        }
        let batches = self.batchBodies.map { batch in
            let codec = batch.codec.map { "\"\($0)\"" } ?? "null"
            return "{\"rows\":\(batch.rows),\"codec\":\(codec),\"body_bytes\":\(batch.bodyBytes),"
                + "\"uncompressed_bytes\":\(batch.uncompressedBytes)}"
        }
        let metadata = self.schema.metadata.map { "\(JSONText.quote($0.keyString)):\(JSONText.quote($0.valueString))" }
        return "{\"format\":\"\(self.format.rawValue)\",\"fields\":[\(fields.joined(separator: ","))],"
            + "\"metadata\":{\(metadata.joined(separator: ","))},\"record_batches\":\(self.recordBatches),"
            + "\"dictionary_batches\":\(self.dictionaryBatches),\"rows\":\(self.rows),\"bytes\":\(self.bytes),"
            + "\"batches\":[\(batches.joined(separator: ","))]}"
    }
}

struct IPCInspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print the schema, batch count, rows and bytes of an Arrow IPC stream or file.",
        discussion: """
            The format is detected from the bytes. Every batch is read and fully validated. Each record batch is \
            listed with its body compression codec (LZ4_FRAME, ZSTD or none), its body bytes as stored and its \
            buffers' bytes uncompressed.
            """
    )

    @Argument(help: "The Arrow IPC stream or file ('-' for standard input).")
    var file: String

    @Flag(name: .customLong("json"), help: "Print one JSON object instead of text.")
    var jsonFlag = false
    /// The flag, or `VALKEYFLIGHT_JSON` set to 1/true/yes.
    var json: Bool { self.jsonFlag || Environment.flag("JSON") }

    func run() async throws {
        let bytes = try ArrowInput.read(self.file)
        let (summary, _) = try IPCSummary.read(bytes)
        print(self.json ? summary.json : summary.text)
    }
}

struct IPCConvertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Re-encode an Arrow IPC stream or file through ValkeyFlight's reader and writer.",
        discussion: """
            The input format is detected from the bytes (compressed input is decompressed); every batch is fully \
            validated before it is written. The output is uncompressed unless --compression lz4|zstd is given.
            """
    )

    @Argument(help: "Input stream or file ('-' for standard input).")
    var input: String

    @Argument(help: "Output path ('-' for standard output).")
    var output: String

    @Option(help: "Output format: stream or file.")
    var to: IPCFormat = Environment.value(for: "TO").flatMap(IPCFormat.init(rawValue:)) ?? .stream

    @Option(help: "Body compression of the output: none, lz4 or zstd. (default: none, whatever the input used)")
    var compression: BodyCompressionChoice?

    @Option(help: "Compression level (zstd; 1 is fastest). (default: 1)")
    var level: Int?

    func run() async throws {
        let compression = try Environment.resolve(self.compression, "COMPRESSION", default: .none)
        let level = try Environment.resolve(self.level, "LEVEL")
        let bytes = try ArrowInput.read(self.input)
        let (summary, batches) = try IPCSummary.read(bytes)
        var writer = IPCWriter(schema: summary.schema, format: self.to,
                               options: IPCWriteOptions(compression: compression.codec, level: level))
        for batch in batches { try writer.write(batch) }
        writer.finish()
        try FileIO.write(writer.segments, to: self.output)
    }
}

extension IPCFormat: ExpressibleByArgument {}

/// `--compression none|lz4|zstd`.
enum BodyCompressionChoice: String, ExpressibleByArgument, CaseIterable {
    case none, lz4, zstd

    var codec: CompressionCodec? {
        switch self {
        case .none: return nil
        case .lz4: return .lz4Frame
        case .zstd: return .zstd
        }
    }
}
