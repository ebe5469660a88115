/// Appends protobuf wire encodings to a growing `[UInt8]`.
///
/// For large `bytes` fields that should not be copied, ``lengthDelimitedHeader(field:length:)`` gives only the
/// tag and length; the caller sends those bytes followed by its own buffers.
public struct ProtoWriter: Sendable {
    /// The encoded bytes so far.
    public private(set) var bytes: [UInt8]

    /// Creates an empty writer, reserving `capacity` bytes.
    public init(capacity: Int = 64) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    /// Number of bytes a varint encoding of `value` takes (1 ... 10).
    public static func varintSize(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    /// Appends a raw varint.
    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            self.bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        self.bytes.append(UInt8(v))
    }

    /// Appends a tag. `field` must be 1 ... 2^29 - 1 (a programming error otherwise).
    public mutating func writeTag(field: Int, wireType: ProtoWireType) {
        precondition(field >= 1 && field <= (1 << 29) - 1, "protobuf field number out of range")
        self.writeVarint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    /// Appends a little-endian fixed32.
    public mutating func writeFixed32(_ value: UInt32) {
        for i in 0..<4 { self.bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) }
    }

    /// Appends a little-endian fixed64.
    public mutating func writeFixed64(_ value: UInt64) {
        for i in 0..<8 { self.bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }

    /// Appends a varint field (uint32, uint64, enum, bool as 0/1).
    public mutating func writeUInt64(field: Int, _ value: UInt64) {
        self.writeTag(field: field, wireType: .varint)
        self.writeVarint(value)
    }

    /// Appends an int64 (or int32/enum: negative values take 10 bytes, as protobuf specifies).
    public mutating func writeInt64(field: Int, _ value: Int64) {
        self.writeUInt64(field: field, UInt64(bitPattern: value))
    }

    /// Appends an int32 field.
    public mutating func writeInt32(field: Int, _ value: Int32) {
        self.writeInt64(field: field, Int64(value))
    }

    /// Appends a sint64 (zigzag) field.
    public mutating func writeSInt64(field: Int, _ value: Int64) {
        self.writeUInt64(field: field, ZigZag.encode(value))
    }

    /// Appends a sint32 (zigzag) field.
    public mutating func writeSInt32(field: Int, _ value: Int32) {
        self.writeUInt64(field: field, UInt64(ZigZag.encode(value)))
    }

    /// Appends a bool field.
    public mutating func writeBool(field: Int, _ value: Bool) {
        self.writeUInt64(field: field, value ? 1 : 0)
    }

    /// Appends a fixed64/sfixed64 field from raw bits.
    public mutating func writeFixed64Field(field: Int, _ bits: UInt64) {
        self.writeTag(field: field, wireType: .fixed64)
        self.writeFixed64(bits)
    }

    /// Appends a fixed32/sfixed32 field from raw bits.
    public mutating func writeFixed32Field(field: Int, _ bits: UInt32) {
        self.writeTag(field: field, wireType: .fixed32)
        self.writeFixed32(bits)
    }

    /// Appends a double field.
    public mutating func writeDouble(field: Int, _ value: Double) {
        self.writeFixed64Field(field: field, value.bitPattern)
    }

    /// Appends a float field.
    public mutating func writeFloat(field: Int, _ value: Float) {
        self.writeFixed32Field(field: field, value.bitPattern)
    }

    /// Appends a bytes (or embedded message) field, copying `value`.
    public mutating func writeBytes(field: Int, _ value: some Collection<UInt8>) {
        self.writeTag(field: field, wireType: .lengthDelimited)
        self.writeVarint(UInt64(value.count))
        self.bytes.append(contentsOf: value)
    }

    /// Appends a string field (UTF-8).
    public mutating func writeString(field: Int, _ value: String) {
        self.writeBytes(field: field, value.utf8)
    }

    /// Appends an embedded message field built by `body`.
    public mutating func writeMessage(field: Int, _ body: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        body(&inner)
        self.writeBytes(field: field, inner.bytes)
    }

    /// Appends a packed repeated varint field (omitted when `values` is empty).
    public mutating func writePackedVarints(field: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        var inner = ProtoWriter(capacity: values.count * 2)
        for v in values { inner.writeVarint(v) }
        self.writeBytes(field: field, inner.bytes)
    }

    /// Appends a packed repeated fixed64/double field from raw bits (omitted when empty).
    public mutating func writePackedFixed64(field: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        self.writeTag(field: field, wireType: .lengthDelimited)
        self.writeVarint(UInt64(values.count * 8))
        for v in values { self.writeFixed64(v) }
    }

    /// Appends a packed repeated fixed32/float field from raw bits (omitted when empty).
    public mutating func writePackedFixed32(field: Int, _ values: [UInt32]) {
        guard !values.isEmpty else { return }
        self.writeTag(field: field, wireType: .lengthDelimited)
        self.writeVarint(UInt64(values.count * 4))
        for v in values { self.writeFixed32(v) }
    }

    /// The tag and length of a length-delimited field whose `length` body bytes the caller sends separately
    /// (zero-copy framing of large payloads).
    public static func lengthDelimitedHeader(field: Int, length: Int) -> [UInt8] {
        var w = ProtoWriter(capacity: 16)
        w.writeTag(field: field, wireType: .lengthDelimited)
        w.writeVarint(UInt64(length))
        return w.bytes
    }
}
