public import ArrowIPC

extension ProcessorOutput {
    /// Decodes and FULLY validates an IPC stream (untrusted bytes) into messages that are slices of `bytes`.
    ///
    /// Accepts a stream with or without its end-of-stream marker; nothing may follow the marker.
    ///
    /// - Throws: ``ProcessorError/badOutput(_:stderrTail:)`` (with an empty tail) naming what is wrong: empty
    ///   output, an IPC file instead of a stream, bytes that are not Arrow IPC, a truncated stream, no schema, an
    ///   invalid or unsupported message or batch (``ArrowIPCError``'s text), data after the end-of-stream marker.
    ///   `limits` bounds every message (metadata size, body size, nesting, field count).
    public static func decoding(stream bytes: [UInt8], limits: IPCReadLimits = .default) throws(ProcessorError)
        -> ProcessorOutput
    {
        try self.decoding(stream: bytes[...], limits: limits)
    }

    /// As ``decoding(stream:limits:)-([UInt8],_)`` for a slice (messages are slices of the same storage).
    public static func decoding(stream bytes: ArraySlice<UInt8>, limits: IPCReadLimits = .default)
        throws(ProcessorError) -> ProcessorOutput
    {
        guard !bytes.isEmpty else {
            throw .badOutput("empty output: the processor wrote nothing on stdout (an Arrow IPC stream was expected)",
                             stderrTail: "")
        }
        if IPCFormat.detect(bytes) == .file {
            throw .badOutput(
                "stdout is an Arrow IPC file (ARROW1 magic), not a stream; write it with an IPC stream writer",
                stderrTail: "")
        }
        try Self.checkStart(bytes)
        var messages: [StoredMessage] = []
        var rows = 0
        var end = 0
        do {
            var iterator = try IPCMessageIterator(bytes, limits: limits)
            var decoder = IPCMessageDecoder(options: IPCReadOptions(limits: limits, validation: .full))
            while let message = try iterator.next() {
                // offset + prefix + metadata + body all lie inside `bytes` (the scanner checked them).
                end = message.offset + message.metadataLength + message.body.count
                let decoded = try decoder.decode(header: message.metadata, body: message.body.bytes)
                if case let .recordBatch(batch) = decoded {
                    let (sum, overflow) = rows.addingReportingOverflow(batch.length)
                    guard !overflow else { throw ProcessorError.badOutput("row count overflows", stderrTail: "") }
                    rows = sum
                }
                messages.append(StoredMessage(header: message.metadata, body: message.body.bytes))
            }
            guard let schema = decoder.schema else {
                throw ProcessorError.badOutput("the stream has no schema message (it ends at once)", stderrTail: "")
            }
            try Self.checkEnd(bytes, after: end)
            return ProcessorOutput(schema: schema, messages: messages, rows: rows)
        } catch let error as ProcessorError {
            throw error
        } catch let error as ArrowIPCError {
            throw .badOutput("not a valid Arrow IPC stream: \(error)", stderrTail: "")
        } catch {
            throw .badOutput("not a valid Arrow IPC stream: \(error)", stderrTail: "")
        }
    }

    /// Rejects output whose first bytes cannot begin a stream, with the bytes shown (text printed by mistake
    /// is the common case).
    private static func checkStart(_ bytes: ArraySlice<UInt8>) throws(ProcessorError) {
        let head = Array(bytes.prefix(8))
        guard head.count >= 4 else {
            throw .badOutput("not Arrow IPC: only \(head.count) bytes (\(Self.hex(head)))", stderrTail: "")
        }
        if head[0..<4].allSatisfy({ $0 == 0xFF }) { return }
        // Legacy (pre-0.15) framing: a positive little-endian length that fits in the output.
        let length = Int(head[0]) | Int(head[1]) << 8 | Int(head[2]) << 16 | Int(head[3]) << 24
        if head[3] & 0x80 == 0, length > 0, length <= bytes.count - 4 { return }
        throw .badOutput("not an Arrow IPC stream: it starts with \(Self.hex(head)) instead of the continuation "
                         + "marker FF FF FF FF\(Self.textHint(bytes))", stderrTail: "")
    }

    /// Accepts nothing, or exactly the end-of-stream marker, after the last message.
    private static func checkEnd(_ bytes: ArraySlice<UInt8>, after end: Int) throws(ProcessorError) {
        let rest = bytes.dropFirst(end)
        if rest.isEmpty { return }
        let marker: ArraySlice<UInt8>
        if rest.starts(with: ProcessorInput.endOfStream) {
            marker = rest.dropFirst(8)
        } else if rest.starts(with: [0, 0, 0, 0]) {
            marker = rest.dropFirst(4)
        } else {
            throw .badOutput(
                "\(rest.count) bytes after the last message are neither a message nor the end-of-stream marker",
                stderrTail: "")
        }
        guard marker.isEmpty else {
            throw .badOutput("\(marker.count) bytes of trailing data after the end-of-stream marker", stderrTail: "")
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
    }

    /// ` ("first text…")` when the output looks like printable text.
    private static func textHint(_ bytes: ArraySlice<UInt8>) -> String {
        let head = bytes.prefix(40)
        guard head.allSatisfy({ (0x20...0x7E).contains($0) || $0 == 0x0A || $0 == 0x09 }) else { return "" }
        let text = String(decoding: head, as: UTF8.self).replacingNewlines()
        return " (text: \"\(text)\(bytes.count > head.count ? "…" : "")\")"
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(self.map { $0 == "\n" || $0 == "\t" ? " " : $0 })
    }
}

extension ProcessorOutput {
    /// The same batches re-encoded with `codec` bodies (buffers that do not shrink stay uncompressed, as Arrow
    /// C++ does).
    ///
    /// - Throws: `ArrowIPCError` if re-encoding fails; ``ProcessorError`` if the result does not decode.
    public func compressed(with codec: CompressionCodec) throws -> ProcessorOutput {
        var decoder = IPCMessageDecoder(options: .untrusted)
        var writer = IPCWriter(schema: self.schema, format: .stream, options: IPCWriteOptions(compression: codec))
        for message in self.messages {
            if case let .recordBatch(batch) = try decoder.decode(header: message.header, body: message.body) {
                try writer.write(batch)
            }
        }
        writer.finish()
        return try ProcessorOutput.decoding(stream: writer.bytes())
    }
}
