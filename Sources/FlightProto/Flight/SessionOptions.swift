/// `SessionOptionValue`: a oneof of string, bool, int64 (sfixed64), double or a list of strings;
/// `nil` when no member is set.
public enum SessionOptionValue: Sendable, Equatable {
    case string(String)
    case bool(Bool)
    case int64(Int64)
    case double(Double)
    case stringList([String])
}

struct SessionOptionValueMessage: ProtoMessage {
    var value: SessionOptionValue?

    init() {}
    init(_ value: SessionOptionValue?) { self.value = value }

    mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.value = .string(try reader.readString(key))
        case 2: self.value = .bool(try reader.readBool(key))
        case 3: self.value = .int64(try reader.readSFixed64(key))
        case 4: self.value = .double(try reader.readDouble(key))
        case 5:
            let list: StringList = try reader.readMessage(key)
            self.value = .stringList(list.values)
        default: try reader.skip(key)
        }
    }

    func encode(into writer: inout ProtoWriter) {
        switch self.value {
        case let .string(text): writer.writeString(field: 1, text)
        case let .bool(flag): writer.writeBool(field: 2, flag)
        case let .int64(number): writer.writeFixed64Field(field: 3, UInt64(bitPattern: number))
        case let .double(number): writer.writeDouble(field: 4, number)
        case let .stringList(values): writer.writeMessage(field: 5, StringList(values: values))
        case nil: break
        }
    }
}

struct StringList: ProtoMessage {
    var values: [String] = []

    init() {}
    init(values: [String]) { self.values = values }

    mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        if key.number == 1 { self.values.append(try reader.readString(key)) } else { try reader.skip(key) }
    }

    func encode(into writer: inout ProtoWriter) {
        for value in self.values { writer.writeString(field: 1, value) }
    }
}

/// One entry of a `map<string, V>` field (key = 1, value = 2).
struct MapEntry<Value: ProtoMessage>: ProtoMessage {
    var key = ""
    var value = Value()

    init() {}
    init(key: String, value: Value) {
        self.key = key
        self.value = value
    }

    mutating func decodeField(_ field: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch field.number {
        case 1: self.key = try reader.readString(field)
        case 2: self.value = try reader.readMessage(field, merging: self.value)
        default: try reader.skip(field)
        }
    }

    func encode(into writer: inout ProtoWriter) {
        // Map entries always carry both key and value, even at their defaults (as the reference writes them).
        writer.writeString(field: 1, self.key)
        writer.writeMessage(field: 2, self.value)
    }
}

/// `SetSessionOptionsRequest` and `GetSessionOptionsResult`: field 1, `map<string, SessionOptionValue>`,
/// kept in wire order.
public struct SessionOptions: ProtoMessage {
    public var options: [(name: String, value: SessionOptionValue?)] = []

    public init() {}
    public init(_ options: [(name: String, value: SessionOptionValue?)]) { self.options = options }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        guard key.number == 1 else { return try reader.skip(key) }
        let entry: MapEntry<SessionOptionValueMessage> = try reader.readMessage(key)
        self.options.append((entry.key, entry.value.value))
    }

    public func encode(into writer: inout ProtoWriter) {
        for (name, value) in self.options {
            writer.writeMessage(field: 1, MapEntry(key: name, value: SessionOptionValueMessage(value)))
        }
    }

    public static func == (lhs: SessionOptions, rhs: SessionOptions) -> Bool {
        lhs.options.elementsEqual(rhs.options) { $0.name == $1.name && $0.value == $1.value }
    }
}

public typealias SetSessionOptionsRequest = SessionOptions
public typealias GetSessionOptionsResult = SessionOptions
public typealias GetSessionOptionsRequest = ProtoEmpty
public typealias CloseSessionRequest = ProtoEmpty

struct SessionOptionError: ProtoMessage {
    var value: Int32 = 0

    init() {}
    init(value: Int32) { self.value = value }

    mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        if key.number == 1 { self.value = try reader.readInt32(key) } else { try reader.skip(key) }
    }

    func encode(into writer: inout ProtoWriter) {
        if self.value != 0 { writer.writeInt32(field: 1, self.value) }
    }
}

/// `SetSessionOptionsResult`: per option name an `ErrorValue` (0 UNSPECIFIED, 1 INVALID_NAME,
/// 2 INVALID_VALUE, 3 ERROR).
public struct SetSessionOptionsResult: ProtoMessage {
    public var errors: [(name: String, value: Int32)] = []

    public init() {}
    public init(errors: [(name: String, value: Int32)]) { self.errors = errors }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        guard key.number == 1 else { return try reader.skip(key) }
        let entry: MapEntry<SessionOptionError> = try reader.readMessage(key)
        self.errors.append((entry.key, entry.value.value))
    }

    public func encode(into writer: inout ProtoWriter) {
        for (name, value) in self.errors {
            writer.writeMessage(field: 1, MapEntry(key: name, value: SessionOptionError(value: value)))
        }
    }

    public static func == (lhs: SetSessionOptionsResult, rhs: SetSessionOptionsResult) -> Bool {
        lhs.errors.elementsEqual(rhs.errors) { $0.name == $1.name && $0.value == $1.value }
    }
}
