/// The six protobuf wire types (the low three bits of a tag).
public enum ProtoWireType: UInt8, Sendable, CustomStringConvertible {
    /// int32, int64, uint32, uint64, sint32, sint64, bool, enum.
    case varint = 0
    /// fixed64, sfixed64, double.
    case fixed64 = 1
    /// string, bytes, embedded messages, packed repeated fields.
    case lengthDelimited = 2
    /// Deprecated group start; only skipped.
    case startGroup = 3
    /// Deprecated group end; only skipped.
    case endGroup = 4
    /// fixed32, sfixed32, float.
    case fixed32 = 5

    /// The lowercase protobuf name of the wire type.
    public var description: String {
        switch self {
        case .varint: return "varint"
        case .fixed64: return "fixed64"
        case .lengthDelimited: return "length-delimited"
        case .startGroup: return "start-group"
        case .endGroup: return "end-group"
        case .fixed32: return "fixed32"
        }
    }
}

/// A decoded tag: field number and wire type, plus the offset of the tag in the message.
public struct ProtoFieldKey: Sendable, Equatable {
    /// The field number, 1 ... 2^29 - 1.
    public let number: Int
    /// The wire type that follows the tag.
    public let wireType: ProtoWireType
    /// Byte offset of the tag relative to the start of the message.
    public let offset: Int

    /// Creates a key (used by decoders and tests).
    public init(number: Int, wireType: ProtoWireType, offset: Int) {
        self.number = number
        self.wireType = wireType
        self.offset = offset
    }
}

/// ZigZag mapping of signed integers (sint32/sint64) to unsigned varint values.
public enum ZigZag {
    /// Encodes a signed 64-bit value: 0 → 0, -1 → 1, 1 → 2, ...
    public static func encode(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value &<< 1) ^ (value >> 63))
    }

    /// Decodes a zigzag-encoded 64-bit value.
    public static func decode(_ value: UInt64) -> Int64 {
        Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1)
    }

    /// Encodes a signed 32-bit value.
    public static func encode(_ value: Int32) -> UInt32 {
        UInt32(bitPattern: (value &<< 1) ^ (value >> 31))
    }

    /// Decodes a zigzag-encoded 32-bit value.
    public static func decode(_ value: UInt32) -> Int32 {
        Int32(bitPattern: value >> 1) ^ -Int32(bitPattern: value & 1)
    }
}
