/// Time units of Time, Timestamp and Duration (Schema.fbs `TimeUnit`).
public enum TimeUnit: Int16, Sendable, Equatable {
    case second = 0, millisecond = 1, microsecond = 2, nanosecond = 3
}

/// Units of the Date type (Schema.fbs `DateUnit`): days as int32 or milliseconds as int64.
public enum DateUnit: Int16, Sendable, Equatable {
    case day = 0, millisecond = 1
}

/// Interval kinds (Schema.fbs `IntervalUnit`).
public enum IntervalUnit: Int16, Sendable, Equatable {
    case yearMonth = 0, dayTime = 1, monthDayNano = 2
}

/// Floating-point precisions (Schema.fbs `Precision`).
public enum FloatPrecision: Int16, Sendable, Equatable {
    case half = 0, single = 1, double = 2
}

/// Union layouts (Schema.fbs `UnionMode`).
public enum UnionMode: Int16, Sendable, Equatable {
    case sparse = 0, dense = 1
}

/// An integer type: 8, 16, 32 or 64 bits, signed or not.
public struct IntType: Sendable, Equatable, CustomStringConvertible {
    public let bitWidth: Int
    public let isSigned: Bool

    public init(bitWidth: Int, isSigned: Bool) {
        precondition([8, 16, 32, 64].contains(bitWidth), "integer bit width must be 8, 16, 32 or 64")
        self.bitWidth = bitWidth
        self.isSigned = isSigned
    }

    public static let int8 = IntType(bitWidth: 8, isSigned: true)
    public static let int16 = IntType(bitWidth: 16, isSigned: true)
    public static let int32 = IntType(bitWidth: 32, isSigned: true)
    public static let int64 = IntType(bitWidth: 64, isSigned: true)
    public static let uint8 = IntType(bitWidth: 8, isSigned: false)
    public static let uint16 = IntType(bitWidth: 16, isSigned: false)
    public static let uint32 = IntType(bitWidth: 32, isSigned: false)
    public static let uint64 = IntType(bitWidth: 64, isSigned: false)

    public var description: String { "\(self.isSigned ? "int" : "uint")\(self.bitWidth)" }
}

/// An Arrow logical type (Schema.fbs `Type` union), nested types carrying their child fields.
public indirect enum DataType: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool
    case int(IntType)
    case floatingPoint(FloatPrecision)
    /// Decimal with `bitWidth` 32, 64, 128 or 256.
    case decimal(precision: Int32, scale: Int32, bitWidth: Int32)
    case date(DateUnit)
    /// Time of day; seconds and milliseconds are 32-bit, micro- and nanoseconds 64-bit.
    case time(TimeUnit, bitWidth: Int32)
    case timestamp(TimeUnit, timezone: String?)
    case duration(TimeUnit)
    case interval(IntervalUnit)
    case binary
    case largeBinary
    case utf8
    case largeUtf8
    case binaryView
    case utf8View
    case fixedSizeBinary(byteWidth: Int32)
    case list(Field)
    case largeList(Field)
    case listView(Field)
    case largeListView(Field)
    case fixedSizeList(Field, listSize: Int32)
    case structType([Field])
    /// A map; the child is the `entries` struct of `key` and `value`.
    case map(Field, keysSorted: Bool)
    /// A union; `typeIDs` maps child index → type code (nil means 0, 1, 2, …).
    case union(UnionMode, typeIDs: [Int32]?, children: [Field])
    case runEndEncoded(runEnds: Field, values: Field)

    /// The child fields of a nested type, in schema order (empty for flat types).
    public var children: [Field] {
        switch self {
        case let .list(child), let .largeList(child), let .listView(child), let .largeListView(child),
            let .fixedSizeList(child, _), let .map(child, _):
            return [child]
        case let .structType(fields), let .union(_, _, fields):
            return fields
        case let .runEndEncoded(runEnds, values):
            return [runEnds, values]
        default:
            return []
        }
    }

    /// Width in bytes of one value for fixed-width types, nil otherwise (bool is bit-packed: nil).
    public var byteWidth: Int? {
        switch self {
        case let .int(type): return type.bitWidth / 8
        case let .floatingPoint(precision):
            switch precision {
            case .half: return 2
            case .single: return 4
            case .double: return 8
            }
        case let .decimal(_, _, bitWidth): return Int(bitWidth) / 8
        case let .date(unit): return unit == .day ? 4 : 8
        case let .time(_, bitWidth): return Int(bitWidth) / 8
        case .timestamp, .duration: return 8
        case let .interval(unit):
            switch unit {
            case .yearMonth: return 4
            case .dayTime: return 8
            case .monthDayNano: return 16
            }
        case let .fixedSizeBinary(width): return Int(width)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .bool: return "bool"
        case let .int(type): return type.description
        case let .floatingPoint(precision):
            switch precision {
            case .half: return "float16"
            case .single: return "float32"
            case .double: return "float64"
            }
        case let .decimal(precision, scale, bitWidth): return "decimal\(bitWidth)(\(precision), \(scale))"
        case let .date(unit): return unit == .day ? "date32[day]" : "date64[ms]"
        case let .time(unit, bitWidth): return "time\(bitWidth)[\(unit.abbreviation)]"
        case let .timestamp(unit, timezone):
            return "timestamp[\(unit.abbreviation)\(timezone.map { ", tz=\($0)" } ?? "")]"
        case let .duration(unit): return "duration[\(unit.abbreviation)]"
        case let .interval(unit):
            switch unit {
            case .yearMonth: return "month_interval"
            case .dayTime: return "day_time_interval"
            case .monthDayNano: return "month_day_nano_interval"
            }
        case .binary: return "binary"
        case .largeBinary: return "large_binary"
        case .utf8: return "string"
        case .largeUtf8: return "large_string"
        case .binaryView: return "binary_view"
        case .utf8View: return "string_view"
        case let .fixedSizeBinary(width): return "fixed_size_binary[\(width)]"
        case let .list(child): return "list<\(child.typeDescription)>"
        case let .largeList(child): return "large_list<\(child.typeDescription)>"
        case let .listView(child): return "list_view<\(child.typeDescription)>"
        case let .largeListView(child): return "large_list_view<\(child.typeDescription)>"
        case let .fixedSizeList(child, size): return "fixed_size_list<\(child.typeDescription)>[\(size)]"
        case let .structType(fields): return "struct<\(fields.map(\.typeDescription).joined(separator: ", "))>"
        case let .map(entries, sorted):
            let kv = entries.type.children.map(\.type.description).joined(separator: ", ")
            return "map<\(kv)\(sorted ? ", keys_sorted" : "")>"
        case let .union(mode, _, children):
            return "\(mode == .sparse ? "sparse" : "dense")_union<\(children.map(\.typeDescription).joined(separator: ", "))>"
        case let .runEndEncoded(runEnds, values):
            return "run_end_encoded<run_ends: \(runEnds.type), values: \(values.type)>"
        }
    }
}

extension TimeUnit {
    var abbreviation: String {
        switch self {
        case .second: return "s"
        case .millisecond: return "ms"
        case .microsecond: return "us"
        case .nanosecond: return "ns"
        }
    }
}
