/// A bounds-checked reader over one protobuf message.
///
/// Offsets in errors are relative to the first byte of the message. Every read either succeeds and advances
/// `readerIndex`, or throws and leaves it unchanged. Bytes and string fields are returned as slices of the input,
/// sharing its storage (no copy).
public struct ProtoReader: Sendable {
    /// The message being read.
    public let bytes: ArraySlice<UInt8>
    /// Offset of the next byte to read, relative to the start of the message.
    public private(set) var readerIndex: Int
    /// Maximum nesting of deprecated groups accepted while skipping.
    public let maxGroupDepth: Int

    /// Creates a reader over `bytes` (any slice; offsets are zero-based from its start).
    public init(_ bytes: ArraySlice<UInt8>, maxGroupDepth: Int = 64) {
        self.bytes = bytes
        self.readerIndex = 0
        self.maxGroupDepth = maxGroupDepth
    }

    /// Creates a reader over a whole array.
    public init(_ bytes: [UInt8], maxGroupDepth: Int = 64) {
        self.init(bytes[...], maxGroupDepth: maxGroupDepth)
    }

    /// Bytes left to read.
    public var remaining: Int { self.bytes.count - self.readerIndex }

    /// Whether the whole message has been read.
    public var isAtEnd: Bool { self.readerIndex >= self.bytes.count }

    @inline(__always)
    private func byte(at offset: Int) -> UInt8 {
        self.bytes[self.bytes.startIndex + offset]
    }

    // MARK: - Primitive reads

    /// Reads a base-128 varint of at most 10 bytes.
    /// - Throws: `.truncated` when the input ends inside it, `.malformedVarint` when it is longer than 10 bytes
    ///   or its tenth byte carries more than the top bit of a 64-bit value.
    public mutating func readVarint(field: String = "varint") throws(FlightProtoError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var offset = self.readerIndex
        while true {
            guard offset < self.bytes.count else {
                throw .truncated(
                    field: field, offset: self.readerIndex, needed: offset - self.readerIndex + 1,
                    available: self.remaining)
            }
            let b = self.byte(at: offset)
            offset += 1
            if shift == 63 && b > 1 {
                throw .malformedVarint(offset: self.readerIndex)
            }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { break }
            shift += 7
            if shift > 63 { throw .malformedVarint(offset: self.readerIndex) }
        }
        self.readerIndex = offset
        return result
    }

    /// Reads a little-endian fixed32.
    /// - Throws: `.truncated` when fewer than 4 bytes remain.
    public mutating func readFixed32(field: String = "fixed32") throws(FlightProtoError) -> UInt32 {
        guard self.remaining >= 4 else {
            throw .truncated(field: field, offset: self.readerIndex, needed: 4, available: self.remaining)
        }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(self.byte(at: self.readerIndex + i)) << (8 * UInt32(i)) }
        self.readerIndex += 4
        return value
    }

    /// Reads a little-endian fixed64.
    /// - Throws: `.truncated` when fewer than 8 bytes remain.
    public mutating func readFixed64(field: String = "fixed64") throws(FlightProtoError) -> UInt64 {
        guard self.remaining >= 8 else {
            throw .truncated(field: field, offset: self.readerIndex, needed: 8, available: self.remaining)
        }
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(self.byte(at: self.readerIndex + i)) << (8 * UInt64(i)) }
        self.readerIndex += 8
        return value
    }

    /// Reads a varint length and returns that many bytes as a slice of the input (no copy).
    /// - Throws: `.truncated`/`.malformedVarint` for the length, `.lengthOutOfRange` when it exceeds the input.
    public mutating func readLengthDelimited(field: String = "length-delimited") throws(FlightProtoError)
        -> ArraySlice<UInt8>
    {
        let start = self.readerIndex
        let length = try self.readVarint(field: field)
        guard length <= UInt64(self.remaining) else {
            let available = self.remaining
            self.readerIndex = start
            throw .lengthOutOfRange(offset: start, length: length, available: available)
        }
        let lower = self.bytes.startIndex + self.readerIndex
        let slice = self.bytes[lower..<(lower + Int(length))]
        self.readerIndex += Int(length)
        return slice
    }

    // MARK: - Tags

    /// Reads the next tag, or returns `nil` at the end of the message.
    /// - Throws: `.malformedVarint`/`.truncated` for the tag varint, `.invalidWireType` for wire types 6 and 7,
    ///   `.invalidFieldNumber` for 0 or numbers above 2^29 - 1.
    public mutating func nextField() throws(FlightProtoError) -> ProtoFieldKey? {
        if self.isAtEnd { return nil }
        let start = self.readerIndex
        let tag = try self.readVarint(field: "tag")
        guard let wireType = ProtoWireType(rawValue: UInt8(tag & 7)) else {
            self.readerIndex = start
            throw .invalidWireType(offset: start, found: UInt8(tag & 7))
        }
        let number = tag >> 3
        guard number >= 1, number <= (1 << 29) - 1 else {
            self.readerIndex = start
            throw .invalidFieldNumber(offset: start, found: number)
        }
        return ProtoFieldKey(number: Int(number), wireType: wireType, offset: start)
    }

    /// Skips the value of a field whose tag was just read (unknown fields).
    /// - Throws: the errors of the underlying reads; `.invalidWireType` for a stray end-group;
    ///   `.nestingTooDeep` for groups nested beyond `maxGroupDepth`.
    public mutating func skip(_ key: ProtoFieldKey) throws(FlightProtoError) {
        let start = self.readerIndex
        do {
            try self.skipValue(key, depth: 0)
        } catch {
            self.readerIndex = start
            throw error
        }
    }

    private mutating func skipValue(_ key: ProtoFieldKey, depth: Int) throws(FlightProtoError) {
        switch key.wireType {
        case .varint: _ = try self.readVarint(field: "field \(key.number)")
        case .fixed64: _ = try self.readFixed64(field: "field \(key.number)")
        case .fixed32: _ = try self.readFixed32(field: "field \(key.number)")
        case .lengthDelimited: _ = try self.readLengthDelimited(field: "field \(key.number)")
        case .endGroup: throw .invalidWireType(offset: key.offset, found: ProtoWireType.endGroup.rawValue)
        case .startGroup:
            guard depth < self.maxGroupDepth else {
                throw .nestingTooDeep(offset: key.offset, limit: self.maxGroupDepth)
            }
            while true {
                guard let inner = try self.nextField() else {
                    throw .truncated(field: "group \(key.number)", offset: self.readerIndex, needed: 1, available: 0)
                }
                if inner.wireType == .endGroup {
                    guard inner.number == key.number else {
                        throw .invalidWireType(offset: inner.offset, found: ProtoWireType.endGroup.rawValue)
                    }
                    return
                }
                try self.skipValue(inner, depth: depth + 1)
            }
        }
    }

    // MARK: - Typed reads of a field whose tag was just read

    private func expect(_ key: ProtoFieldKey, _ wireType: ProtoWireType) throws(FlightProtoError) {
        guard key.wireType == wireType else {
            throw .wireTypeMismatch(field: key.number, offset: key.offset, expected: wireType, found: key.wireType)
        }
    }

    /// Reads a `uint64` field value.
    /// - Throws: `.wireTypeMismatch` unless the key is a varint, then varint errors.
    public mutating func readUInt64(_ key: ProtoFieldKey) throws(FlightProtoError) -> UInt64 {
        try self.expect(key, .varint)
        return try self.readVarint(field: "field \(key.number)")
    }

    /// Reads an `int64` field value (two's complement varint).
    /// - Throws: as ``readUInt64(_:)``.
    public mutating func readInt64(_ key: ProtoFieldKey) throws(FlightProtoError) -> Int64 {
        Int64(bitPattern: try self.readUInt64(key))
    }

    /// Reads a `uint32` field value.
    /// - Throws: as ``readUInt64(_:)``; `.valueOutOfRange` above 2^32 - 1.
    public mutating func readUInt32(_ key: ProtoFieldKey) throws(FlightProtoError) -> UInt32 {
        let start = self.readerIndex
        let value = try self.readUInt64(key)
        guard let narrow = UInt32(exactly: value) else {
            self.readerIndex = start
            throw .valueOutOfRange(field: key.number, offset: start, value: value)
        }
        return narrow
    }

    /// Reads an `int32` or enum field value. Negative values arrive sign-extended to 64 bits (10 bytes).
    /// - Throws: as ``readUInt64(_:)``; `.valueOutOfRange` when the value is neither an int32 nor its
    ///   sign extension.
    public mutating func readInt32(_ key: ProtoFieldKey) throws(FlightProtoError) -> Int32 {
        let start = self.readerIndex
        let value = Int64(bitPattern: try self.readUInt64(key))
        // Accept int32 sign-extended values and, like protobuf C++, truncated 32-bit patterns.
        if let narrow = Int32(exactly: value) { return narrow }
        if let unsigned = UInt32(exactly: value) { return Int32(bitPattern: unsigned) }
        self.readerIndex = start
        throw .valueOutOfRange(field: key.number, offset: start, value: UInt64(bitPattern: value))
    }

    /// Reads a `sint64` (zigzag) field value.
    /// - Throws: as ``readUInt64(_:)``.
    public mutating func readSInt64(_ key: ProtoFieldKey) throws(FlightProtoError) -> Int64 {
        ZigZag.decode(try self.readUInt64(key))
    }

    /// Reads a `sint32` (zigzag) field value.
    /// - Throws: as ``readUInt32(_:)``.
    public mutating func readSInt32(_ key: ProtoFieldKey) throws(FlightProtoError) -> Int32 {
        ZigZag.decode(try self.readUInt32(key))
    }

    /// Reads a `bool` field value (any non-zero varint is true).
    /// - Throws: as ``readUInt64(_:)``.
    public mutating func readBool(_ key: ProtoFieldKey) throws(FlightProtoError) -> Bool {
        try self.readUInt64(key) != 0
    }

    /// Reads a `fixed64`/`sfixed64` field value as bits.
    /// - Throws: `.wireTypeMismatch` unless the key is fixed64; `.truncated`.
    public mutating func readFixed64Field(_ key: ProtoFieldKey) throws(FlightProtoError) -> UInt64 {
        try self.expect(key, .fixed64)
        return try self.readFixed64(field: "field \(key.number)")
    }

    /// Reads a `fixed32`/`sfixed32` field value as bits.
    /// - Throws: `.wireTypeMismatch` unless the key is fixed32; `.truncated`.
    public mutating func readFixed32Field(_ key: ProtoFieldKey) throws(FlightProtoError) -> UInt32 {
        try self.expect(key, .fixed32)
        return try self.readFixed32(field: "field \(key.number)")
    }

    /// Reads an `sfixed64` field value.
    /// - Throws: as ``readFixed64Field(_:)``.
    public mutating func readSFixed64(_ key: ProtoFieldKey) throws(FlightProtoError) -> Int64 {
        Int64(bitPattern: try self.readFixed64Field(key))
    }

    /// Reads a `double` field value.
    /// - Throws: as ``readFixed64Field(_:)``.
    public mutating func readDouble(_ key: ProtoFieldKey) throws(FlightProtoError) -> Double {
        Double(bitPattern: try self.readFixed64Field(key))
    }

    /// Reads a `float` field value.
    /// - Throws: as ``readFixed32Field(_:)``.
    public mutating func readFloat(_ key: ProtoFieldKey) throws(FlightProtoError) -> Float {
        Float(bitPattern: try self.readFixed32Field(key))
    }

    /// Reads a `bytes` or embedded-message field value as a slice of the input (no copy).
    /// - Throws: `.wireTypeMismatch` unless length-delimited; length errors.
    public mutating func readBytes(_ key: ProtoFieldKey) throws(FlightProtoError) -> ArraySlice<UInt8> {
        try self.expect(key, .lengthDelimited)
        return try self.readLengthDelimited(field: "field \(key.number)")
    }

    /// Reads a `string` field value, validating UTF-8.
    /// - Throws: as ``readBytes(_:)``; `.invalidUTF8`.
    public mutating func readString(_ key: ProtoFieldKey) throws(FlightProtoError) -> String {
        let start = self.readerIndex
        let slice = try self.readBytes(key)
        guard let text = String(validating: slice, as: UTF8.self) else {
            self.readerIndex = start
            throw .invalidUTF8(field: key.number, offset: start)
        }
        return text
    }

    /// Reads a repeated varint field, accepting both packed (length-delimited) and unpacked encodings;
    /// appends to `values`.
    /// - Throws: `.wireTypeMismatch` for other wire types; varint and length errors.
    public mutating func readPackedVarints(_ key: ProtoFieldKey, into values: inout [UInt64]) throws(FlightProtoError) {
        switch key.wireType {
        case .varint:
            values.append(try self.readVarint(field: "field \(key.number)"))
        case .lengthDelimited:
            let start = self.readerIndex
            let body = try self.readLengthDelimited(field: "field \(key.number)")
            let bodyOffset = self.readerIndex - body.count
            var inner = ProtoReader(body)
            var decoded: [UInt64] = []
            while !inner.isAtEnd {
                do {
                    decoded.append(try inner.readVarint(field: "packed field \(key.number)"))
                } catch {
                    self.readerIndex = start
                    throw error.shifted(by: bodyOffset)
                }
            }
            values.append(contentsOf: decoded)
        default:
            throw .wireTypeMismatch(
                field: key.number, offset: key.offset, expected: .lengthDelimited, found: key.wireType)
        }
    }

    /// Reads a repeated fixed64/double/sfixed64 field (packed or not) as raw bits; appends to `values`.
    /// - Throws: `.wireTypeMismatch` for other wire types; `.truncated`/`.lengthOutOfRange`, and `.truncated`
    ///   when a packed body is not a multiple of 8 bytes.
    public mutating func readPackedFixed64(_ key: ProtoFieldKey, into values: inout [UInt64]) throws(FlightProtoError) {
        switch key.wireType {
        case .fixed64:
            values.append(try self.readFixed64(field: "field \(key.number)"))
        case .lengthDelimited:
            let start = self.readerIndex
            let body = try self.readLengthDelimited(field: "field \(key.number)")
            guard body.count % 8 == 0 else {
                self.readerIndex = start
                throw .truncated(
                    field: "packed field \(key.number)", offset: start, needed: 8 - body.count % 8 + body.count,
                    available: body.count)
            }
            var inner = ProtoReader(body)
            while !inner.isAtEnd {
                values.append(try inner.readFixed64())
            }
        default:
            throw .wireTypeMismatch(
                field: key.number, offset: key.offset, expected: .lengthDelimited, found: key.wireType)
        }
    }

    /// Reads a repeated fixed32/float/sfixed32 field (packed or not) as raw bits; appends to `values`.
    /// - Throws: as ``readPackedFixed64(_:into:)`` with 4-byte elements.
    public mutating func readPackedFixed32(_ key: ProtoFieldKey, into values: inout [UInt32]) throws(FlightProtoError) {
        switch key.wireType {
        case .fixed32:
            values.append(try self.readFixed32(field: "field \(key.number)"))
        case .lengthDelimited:
            let start = self.readerIndex
            let body = try self.readLengthDelimited(field: "field \(key.number)")
            guard body.count % 4 == 0 else {
                self.readerIndex = start
                throw .truncated(
                    field: "packed field \(key.number)", offset: start, needed: 4 - body.count % 4 + body.count,
                    available: body.count)
            }
            var inner = ProtoReader(body)
            while !inner.isAtEnd {
                values.append(try inner.readFixed32())
            }
        default:
            throw .wireTypeMismatch(
                field: key.number, offset: key.offset, expected: .lengthDelimited, found: key.wireType)
        }
    }
}

extension FlightProtoError {
    /// The same error with its offset moved by `delta` (errors of nested readers report message offsets).
    func shifted(by delta: Int) -> FlightProtoError {
        switch self {
        case .truncated(let field, let offset, let needed, let available):
            return .truncated(field: field, offset: offset + delta, needed: needed, available: available)
        case .malformedVarint(let offset): return .malformedVarint(offset: offset + delta)
        case .invalidWireType(let offset, let found): return .invalidWireType(offset: offset + delta, found: found)
        case .invalidFieldNumber(let offset, let found):
            return .invalidFieldNumber(offset: offset + delta, found: found)
        case .lengthOutOfRange(let offset, let length, let available):
            return .lengthOutOfRange(offset: offset + delta, length: length, available: available)
        case .wireTypeMismatch(let field, let offset, let expected, let found):
            return .wireTypeMismatch(field: field, offset: offset + delta, expected: expected, found: found)
        case .invalidUTF8(let field, let offset): return .invalidUTF8(field: field, offset: offset + delta)
        case .valueOutOfRange(let field, let offset, let value):
            return .valueOutOfRange(field: field, offset: offset + delta, value: value)
        case .nestingTooDeep(let offset, let limit): return .nestingTooDeep(offset: offset + delta, limit: limit)
        }
    }
}
