/// Every failure of the protobuf wire codec, with the byte offset (relative to the start of the decoded
/// message) where it was found.
public enum FlightProtoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ended inside a value: `needed` bytes were required at `offset`, only `available` remained.
    case truncated(field: String, offset: Int, needed: Int, available: Int)
    /// A varint ran longer than 10 bytes or overflowed 64 bits.
    case malformedVarint(offset: Int)
    /// A tag carried wire type 6 or 7, or an end-group without a matching start-group.
    case invalidWireType(offset: Int, found: UInt8)
    /// A tag carried field number 0 or a number above 2^29 - 1.
    case invalidFieldNumber(offset: Int, found: UInt64)
    /// A length prefix pointed past the end of the input.
    case lengthOutOfRange(offset: Int, length: UInt64, available: Int)
    /// A known field arrived with a wire type its declared type cannot use.
    case wireTypeMismatch(field: Int, offset: Int, expected: ProtoWireType, found: ProtoWireType)
    /// A string field held bytes that are not UTF-8.
    case invalidUTF8(field: Int, offset: Int)
    /// A value does not fit the declared type (e.g. an int32 varint above 2^32).
    case valueOutOfRange(field: Int, offset: Int, value: UInt64)
    /// Groups nested deeper than the configured limit.
    case nestingTooDeep(offset: Int, limit: Int)

    /// One line a user can act on.
    public var description: String {
        switch self {
        case .truncated(let field, let offset, let needed, let available):
            return "protobuf input truncated in \(field) at byte \(offset): needed \(needed) bytes, \(available) left"
        case .malformedVarint(let offset):
            return "protobuf varint at byte \(offset) is longer than 10 bytes or overflows 64 bits"
        case .invalidWireType(let offset, let found):
            return "protobuf tag at byte \(offset) has invalid wire type \(found)"
        case .invalidFieldNumber(let offset, let found):
            return "protobuf tag at byte \(offset) has invalid field number \(found)"
        case .lengthOutOfRange(let offset, let length, let available):
            return "protobuf length \(length) at byte \(offset) exceeds the \(available) bytes left"
        case .wireTypeMismatch(let field, let offset, let expected, let found):
            return "protobuf field \(field) at byte \(offset) has wire type \(found), expected \(expected)"
        case .invalidUTF8(let field, let offset):
            return "protobuf string field \(field) at byte \(offset) is not valid UTF-8"
        case .valueOutOfRange(let field, let offset, let value):
            return "protobuf field \(field) at byte \(offset) holds \(value), out of range for its type"
        case .nestingTooDeep(let offset, let limit):
            return "protobuf groups nested deeper than \(limit) at byte \(offset)"
        }
    }
}
