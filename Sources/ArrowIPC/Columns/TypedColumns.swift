/// A Swift type that an Arrow fixed-width column can hold (integers and floating point).
public protocol ArrowPrimitive: Sendable {
    /// The Arrow type used when building a column of this Swift type.
    static var arrowType: DataType { get }
    /// Whether a column of `type` stores values of this Swift type (e.g. Int64 reads int64, timestamp,
    /// duration, date64 and time64 columns).
    static func canRead(_ type: DataType) -> Bool
    /// Loads value `index` of a values buffer.
    static func load(_ buffer: ArrowBuffer, index: Int) -> Self
    /// Appends the little-endian bytes of `self`.
    func append(to bytes: inout [UInt8])
}

extension ArrowPrimitive where Self: FixedWidthInteger {
    public static func load(_ buffer: ArrowBuffer, index: Int) -> Self {
        buffer.load(Self.self, at: index * MemoryLayout<Self>.size)
    }

    public func append(to bytes: inout [UInt8]) {
        withUnsafeBytes(of: self.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public static var arrowType: DataType { .int(IntType(bitWidth: Self.bitWidth, isSigned: Self.isSigned)) }

    public static func canRead(_ type: DataType) -> Bool {
        switch type {
        case let .int(intType): return intType.bitWidth == Self.bitWidth && intType.isSigned == Self.isSigned
        case .date, .time, .timestamp, .duration, .interval(.yearMonth):
            return Self.isSigned && type.byteWidth == MemoryLayout<Self>.size
        default: return false
        }
    }
}

extension Int8: ArrowPrimitive {}
extension Int16: ArrowPrimitive {}
extension Int32: ArrowPrimitive {}
extension Int64: ArrowPrimitive {}
extension UInt8: ArrowPrimitive {}
extension UInt16: ArrowPrimitive {}
extension UInt32: ArrowPrimitive {}
extension UInt64: ArrowPrimitive {}

extension Double: ArrowPrimitive {
    public static var arrowType: DataType { .floatingPoint(.double) }
    public static func canRead(_ type: DataType) -> Bool { type == .floatingPoint(.double) }
    public static func load(_ buffer: ArrowBuffer, index: Int) -> Double {
        Double(bitPattern: buffer.load(UInt64.self, at: index * 8))
    }
    public func append(to bytes: inout [UInt8]) { self.bitPattern.append(to: &bytes) }
}

extension Float: ArrowPrimitive {
    public static var arrowType: DataType { .floatingPoint(.single) }
    public static func canRead(_ type: DataType) -> Bool { type == .floatingPoint(.single) }
    public static func load(_ buffer: ArrowBuffer, index: Int) -> Float {
        Float(bitPattern: buffer.load(UInt32.self, at: index * 4))
    }
    public func append(to bytes: inout [UInt8]) { self.bitPattern.append(to: &bytes) }
}

/// Read access to a fixed-width column: `column[i]` is nil for nulls.
public struct PrimitiveColumn<Value: ArrowPrimitive>: RandomAccessCollection, Sendable {
    public let array: ArrayData
    public var startIndex: Int { 0 }
    public var endIndex: Int { self.array.length }

    /// The value at `index`, or nil if the slot is null.
    public subscript(index: Int) -> Value? {
        self.array.isValid(index) ? Value.load(self.array.buffers[1], index: index) : nil
    }
}

/// Read access to a boolean column.
public struct BoolColumn: RandomAccessCollection, Sendable {
    public let array: ArrayData
    public var startIndex: Int { 0 }
    public var endIndex: Int { self.array.length }

    public subscript(index: Int) -> Bool? {
        self.array.isValid(index) ? self.array.buffers[1].bit(index) : nil
    }
}

/// Read access to a binary or string column (binary, large_binary, utf8, large_utf8, and the view types).
/// Creating it checks every offset or view (O(n)), so that reads cannot leave their buffers.
public struct BinaryColumn: RandomAccessCollection, Sendable {
    public let array: ArrayData
    public var startIndex: Int { 0 }
    public var endIndex: Int { self.array.length }

    init(validated array: ArrayData) {
        self.array = array
    }

    /// The bytes of slot `index` (a view, no copy), or nil if null.
    public subscript(index: Int) -> ArraySlice<UInt8>? {
        guard self.array.isValid(index) else { return nil }
        switch self.array.type {
        case .binaryView, .utf8View:
            let views = self.array.buffers[1]
            let length = Int(views.load(Int32.self, at: index * 16))
            if length <= 12 {
                let start = views.bytes.startIndex + index * 16 + 4
                return views.bytes[start..<(start + length)]
            }
            let buffer = self.array.buffers[2 + Int(views.load(Int32.self, at: index * 16 + 8))]
            let start = buffer.bytes.startIndex + Int(views.load(Int32.self, at: index * 16 + 12))
            return buffer.bytes[start..<(start + length)]
        case .largeBinary, .largeUtf8:
            let offsets = self.array.buffers[1]
            let start = Int(offsets.load(Int64.self, at: index * 8))
            let end = Int(offsets.load(Int64.self, at: index * 8 + 8))
            let data = self.array.buffers[2].bytes
            return data[(data.startIndex + start)..<(data.startIndex + end)]
        default:
            let offsets = self.array.buffers[1]
            let start = Int(offsets.load(Int32.self, at: index * 4))
            let end = Int(offsets.load(Int32.self, at: index * 4 + 4))
            let data = self.array.buffers[2].bytes
            return data[(data.startIndex + start)..<(data.startIndex + end)]
        }
    }

    /// Slot `index` decoded as a UTF-8 string, or nil if null.
    public func string(at index: Int) -> String? {
        self[index].map { String(decoding: $0, as: UTF8.self) }
    }
}

extension ArrayData {
    /// This column as values of `Value`.
    ///
    /// - Throws: ``ArrowIPCError/typeMismatch(expected:found:)`` if the column's type does not store `Value`.
    public func values<Value: ArrowPrimitive>(as _: Value.Type) throws(ArrowIPCError) -> PrimitiveColumn<Value> {
        guard self.encoding == nil, Value.canRead(self.type) else {
            throw .typeMismatch(expected: "a column readable as \(Value.self)", found: self.type.description)
        }
        return PrimitiveColumn(array: self)
    }

    /// This column as booleans.
    ///
    /// - Throws: ``ArrowIPCError/typeMismatch(expected:found:)`` unless the type is bool.
    public func bools() throws(ArrowIPCError) -> BoolColumn {
        guard self.encoding == nil, self.type == .bool else { throw .typeMismatch(expected: "bool", found: self.type.description) }
        return BoolColumn(array: self)
    }

    /// This column as byte strings (binary, string and their large and view variants), after an O(n)
    /// check of its offsets or views.
    ///
    /// - Throws: ``ArrowIPCError/typeMismatch(expected:found:)`` for other types and
    ///   ``ArrowIPCError/invalidData(field:reason:)`` if an offset or view is out of range.
    public func binaries() throws(ArrowIPCError) -> BinaryColumn {
        guard self.encoding == nil else {
            throw .typeMismatch(expected: "a binary or string column", found: "dictionary-encoded \(self.type)")
        }
        switch self.type {
        case .binary, .largeBinary, .utf8, .largeUtf8, .binaryView, .utf8View:
            // Arrays built by hand have not been through a reader: check their buffer sizes first.
            try StructuralValidator.check(self, against: Field("column", self.type))
            try FullValidator.validate(self, name: "column", checkDictionaries: false)
            return BinaryColumn(validated: self)
        default:
            throw .typeMismatch(expected: "a binary or string column", found: self.type.description)
        }
    }

    /// This column's strings (nil for nulls), after full validation of offsets and UTF-8.
    ///
    /// - Throws: as ``binaries()``.
    public func strings() throws(ArrowIPCError) -> [String?] {
        let column = try self.binaries()
        return (0..<self.length).map { column.string(at: $0) }
    }
}
