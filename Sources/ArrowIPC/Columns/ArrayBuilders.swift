/// Building arrays from Swift values. Each builder produces a valid array (checked again by
/// ``RecordBatch/init(schema:columns:)``).
extension ArrayData {
    /// An LSB-first validity bitmap for `valid`, or an empty buffer when every slot is valid.
    static func validityBitmap(_ valid: some Collection<Bool>) -> (ArrowBuffer, nullCount: Int) {
        var nulls = 0
        var bitmap = [UInt8](repeating: 0, count: (valid.count + 7) / 8)
        for (index, isValid) in valid.enumerated() {
            if isValid { bitmap[index >> 3] |= 1 << UInt8(index & 7) } else { nulls += 1 }
        }
        return nulls == 0 ? (.empty, 0) : (ArrowBuffer(bitmap), nulls)
    }

    /// A fixed-width column of `values` (nil = null); `type` overrides the default Arrow type of
    /// `Value` with one of the same width (e.g. `.timestamp(.microsecond, timezone: "UTC")` for Int64).
    public static func primitive<Value: ArrowPrimitive>(_ values: [Value?], type: DataType? = nil) -> ArrayData {
        let arrowType = type ?? Value.arrowType
        precondition(Value.canRead(arrowType), "\(Value.self) cannot hold \(arrowType)")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * MemoryLayout<Value>.size)
        let zero = Value.load(ArrowBuffer([UInt8](repeating: 0, count: 8)), index: 0)
        for value in values { (value ?? zero).append(to: &bytes) }
        let (validity, nulls) = self.validityBitmap(values.lazy.map { $0 != nil })
        return ArrayData(type: arrowType, length: values.count, nullCount: nulls, buffers: [validity, ArrowBuffer(bytes)])
    }

    /// A boolean column.
    public static func bool(_ values: [Bool?]) -> ArrayData {
        let (bits, _) = self.validityBitmap(values.lazy.map { $0 == true })
        let (validity, nulls) = self.validityBitmap(values.lazy.map { $0 != nil })
        let bitBuffer = bits.count == 0 ? ArrowBuffer([UInt8](repeating: 0, count: (values.count + 7) / 8)) : bits
        return ArrayData(type: .bool, length: values.count, nullCount: nulls, buffers: [validity, bitBuffer])
    }

    /// A variable-length binary or string column (`type` is .binary, .utf8, .largeBinary or .largeUtf8).
    public static func binary(_ values: [[UInt8]?], type: DataType = .binary) -> ArrayData {
        let wide = type == .largeBinary || type == .largeUtf8
        precondition([.binary, .utf8, .largeBinary, .largeUtf8].contains(type), "\(type) is not a binary type")
        var offsets: [UInt8] = []
        var data: [UInt8] = []
        func appendOffset(_ offset: Int) {
            if wide { Int64(offset).append(to: &offsets) } else { Int32(offset).append(to: &offsets) }
        }
        appendOffset(0)
        for value in values {
            if let value { data.append(contentsOf: value) }
            appendOffset(data.count)
        }
        let (validity, nulls) = self.validityBitmap(values.lazy.map { $0 != nil })
        return ArrayData(type: type, length: values.count, nullCount: nulls,
                         buffers: [validity, ArrowBuffer(offsets), ArrowBuffer(data)])
    }

    /// A UTF-8 string column.
    public static func utf8(_ values: [String?], large: Bool = false) -> ArrayData {
        self.binary(values.map { $0.map { Array($0.utf8) } }, type: large ? .largeUtf8 : .utf8)
    }

    /// A list column: slot i holds `child[offsets[i]..<offsets[i+1]]`; `valid` nil means all valid.
    public static func list(_ child: ArrayData, field: Field, offsets: [Int32], valid: [Bool]? = nil) -> ArrayData {
        precondition(offsets.count >= 1, "a list needs length + 1 offsets")
        var offsetBytes: [UInt8] = []
        for offset in offsets { offset.append(to: &offsetBytes) }
        let (validity, nulls) = self.validityBitmap(valid ?? Array(repeating: true, count: offsets.count - 1))
        return ArrayData(type: .list(field), length: offsets.count - 1, nullCount: nulls,
                         buffers: [validity, ArrowBuffer(offsetBytes)], children: [child])
    }

    /// A struct column of `children` (one per field, each at least `length` long).
    public static func structArray(_ fields: [Field], children: [ArrayData], length: Int, valid: [Bool]? = nil) -> ArrayData {
        let (validity, nulls) = self.validityBitmap(valid ?? Array(repeating: true, count: length))
        return ArrayData(type: .structType(fields), length: length, nullCount: nulls, buffers: [validity], children: children)
    }

    /// A dictionary-encoded column: int32 `indices` (nil = null) into `dictionary`.
    public static func dictionaryEncoded(_ indices: [Int32?], dictionary: DictionaryValues, encoding: DictionaryEncoding) -> ArrayData {
        precondition(encoding.indexType == .int32, "this builder writes int32 indices")
        let plain = self.primitive(indices)
        return ArrayData(type: dictionary.valueType, length: plain.length, nullCount: plain.nullCount,
                         buffers: plain.buffers, encoding: encoding, dictionary: dictionary)
    }
}
