/// A protobuf message with a hand-written codec: proto3 rules (defaults are not written, unknown fields are
/// skipped), fields written in field-number order as the reference encoders do.
public protocol ProtoMessage: Sendable, Equatable {
    /// An empty message (every field at its default).
    init()
    /// Reads one field identified by `key`; unknown fields must be skipped with `reader.skip(key)`.
    mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError)
    /// Writes every non-default field.
    func encode(into writer: inout ProtoWriter)
}

extension ProtoMessage {
    /// Decodes a message; bytes fields are slices of `bytes` (no copy).
    ///
    /// - Throws: ``FlightProtoError`` for malformed input.
    public init(serializedBytes bytes: ArraySlice<UInt8>) throws(FlightProtoError) {
        self.init()
        try self.merge(serializedBytes: bytes)
    }

    /// Reads the fields of `bytes` into this message as protobuf merging does: scalars and bytes are
    /// replaced, repeated fields appended, embedded messages merged field by field.
    public mutating func merge(serializedBytes bytes: ArraySlice<UInt8>) throws(FlightProtoError) {
        var reader = ProtoReader(bytes)
        while let key = try reader.nextField() {
            try self.decodeField(key, from: &reader)
        }
    }

    /// Decodes a message held in an array.
    public init(serializedBytes bytes: [UInt8]) throws(FlightProtoError) {
        try self.init(serializedBytes: bytes[...])
    }

    /// The encoded message.
    public func serializedBytes() -> [UInt8] {
        var writer = ProtoWriter()
        self.encode(into: &writer)
        return writer.bytes
    }
}

extension ProtoReader {
    /// Reads an embedded message field, merged into `existing` (a singular message field that occurs twice
    /// is merged, as protobuf specifies). Errors inside it report offsets relative to this message.
    public mutating func readMessage<M: ProtoMessage>(_ key: ProtoFieldKey, merging existing: M? = nil) throws(FlightProtoError) -> M {
        let bytes = try self.readBytes(key)
        var message = existing ?? M()
        do {
            try message.merge(serializedBytes: bytes)
        } catch {
            throw error.shifted(by: self.readerIndex - bytes.count)
        }
        return message
    }
}

extension ProtoWriter {
    /// Writes `message` as an embedded message field (always, even when empty: presence matters).
    public mutating func writeMessage(field: Int, _ message: some ProtoMessage) {
        self.writeMessage(field: field) { message.encode(into: &$0) }
    }

    /// Writes a bytes field unless empty (proto3 default).
    mutating func writeNonEmptyBytes(field: Int, _ value: ArraySlice<UInt8>) {
        if !value.isEmpty { self.writeBytes(field: field, value) }
    }

    /// Writes a string field unless empty (proto3 default).
    mutating func writeNonEmptyString(field: Int, _ value: String) {
        if !value.isEmpty { self.writeString(field: field, value) }
    }
}

/// `google.protobuf.Timestamp`.
public struct ProtoTimestamp: ProtoMessage {
    public var seconds: Int64 = 0
    public var nanos: Int32 = 0

    public init() {}

    public init(seconds: Int64, nanos: Int32 = 0) {
        self.seconds = seconds
        self.nanos = nanos
    }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.seconds = try reader.readInt64(key)
        case 2: self.nanos = try reader.readInt32(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        if self.seconds != 0 { writer.writeInt64(field: 1, self.seconds) }
        if self.nanos != 0 { writer.writeInt32(field: 2, self.nanos) }
    }
}

/// `google.protobuf.Empty` and Flight's `Empty`.
public struct ProtoEmpty: ProtoMessage {
    public init() {}
    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        try reader.skip(key)
    }
    public func encode(into writer: inout ProtoWriter) {}
}
