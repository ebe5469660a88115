internal import Node

/// Reads an input that must be Arrow IPC, and says what it is instead when it is not: a Parquet, Feather v1 or
/// ORC file, a compressed file, CSV/JSON/other text, or nothing at all. The IPC reader's own errors ("message
/// metadata size exceeds the limit…") describe a broken stream, which is the wrong message for a file that never was
/// one.
enum ArrowInput {
    /// The bytes of `path` ('-' for standard input), checked to look like Arrow IPC.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` naming what the input is, or ``NodeError/io(operation:path:errno:)``.
    static func read(_ path: String) throws(NodeError) -> [UInt8] {
        let bytes = try FileIO.readAll(path)
        if let problem = self.problem(bytes) {
            throw .invalidArgument("\(path == "-" ? "standard input" : path) is not Arrow IPC: \(problem)")
        }
        return bytes
    }

    /// The bytes of `path` as `read` checks them, mapped when it is a regular file (no copy; the pages are the
    /// page cache's, touched as they are sent) and read otherwise.
    ///
    /// - Throws: as ``read(_:)``.
    static func load(_ path: String) throws(NodeError) -> ArraySlice<UInt8> {
        guard path != "-", let mapped = MappedInput.map(path) else { return try self.read(path)[...] }
        if let problem = self.problem(Array(mapped.prefix(4096))) {
            throw .invalidArgument("\(path) is not Arrow IPC: \(problem)")
        }
        return mapped
    }

    /// Why `bytes` cannot be Arrow IPC, or nil when they may be (the reader decides).
    static func problem(_ bytes: [UInt8]) -> String? {
        if bytes.isEmpty { return "it is empty (an Arrow IPC stream starts with a schema message)" }
        let convert = "convert it with pyarrow (read it into a table, then write it with pyarrow.ipc.new_stream)"
        for (magic, what) in Self.foreignMagic where bytes.starts(with: magic) {
            return "it is \(what); \(what.hasPrefix("compressed") ? "decompress it first" : convert)"
        }
        // Arrow IPC starts with ARROW1 (file), the 0xFFFFFFFF continuation marker (stream), or, in the legacy
        // stream format, a little-endian metadata length whose high byte is 0 for any sane size.
        if bytes.starts(with: Array("ARROW1".utf8)) || bytes.starts(with: [0xFF, 0xFF, 0xFF, 0xFF]) { return nil }
        if let text = Self.textKind(bytes) { return "it looks like \(text); \(convert)" }
        return nil
    }

    private static let foreignMagic: [([UInt8], String)] = [
        (Array("PAR1".utf8), "a Parquet file (it starts with PAR1)"),
        (Array("FEA1".utf8), "a Feather v1 file (it starts with FEA1; Feather v2 is Arrow IPC)"),
        (Array("ORC".utf8), "an ORC file (it starts with ORC)"),
        ([0x1F, 0x8B], "compressed with gzip"),
        ([0x28, 0xB5, 0x2F, 0xFD], "compressed with Zstandard as a whole (not Arrow body compression)"),
        ([0x04, 0x22, 0x4D, 0x18], "compressed with LZ4 as a whole (not Arrow body compression)"),
        ([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00], "compressed with xz"),
        (Array("BZh".utf8), "compressed with bzip2"),
        (Array("PK".utf8) + [3, 4], "a zip archive (compressed)"),
    ]

    /// "CSV text", "JSON text" or "text" when the first bytes are printable UTF-8 text.
    private static func textKind(_ bytes: [UInt8]) -> String? {
        let head = bytes.prefix(4096)
        guard head.allSatisfy({ $0 >= 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else { return nil }
        // A multi-byte character cut at the end of the prefix is still text.
        let decoded = String(decoding: head, as: UTF8.self)
        guard decoded.unicodeScalars.filter({ $0 == "\u{FFFD}" }).count <= 1 else { return nil }
        let firstLine = decoded.prefix { $0 != "\n" && $0 != "\r\n" }
        if let first = decoded.first(where: { !$0.isWhitespace }), first == "{" || first == "[" { return "JSON text" }
        if firstLine.contains(",") || firstLine.contains("\t") || firstLine.contains(";") { return "CSV text" }
        return "text"
    }
}
