/// A custom-metadata entry (Schema.fbs `KeyValue`). Keys and values are kept as raw bytes so that
/// re-encoding is exact even when a writer stored bytes that are not UTF-8.
public struct KeyValue: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }

    public init(_ key: String, _ value: String) {
        self.key = Array(key.utf8)
        self.value = Array(value.utf8)
    }

    /// The key decoded as UTF-8 (invalid sequences replaced).
    public var keyString: String { String(decoding: self.key, as: UTF8.self) }
    /// The value decoded as UTF-8 (invalid sequences replaced).
    public var valueString: String { String(decoding: self.value, as: UTF8.self) }
}

extension Array where Element == KeyValue {
    /// The value of the first entry with `key`, as a UTF-8 string.
    public subscript(key key: String) -> String? {
        let wanted = [UInt8](key.utf8)
        return self.first { $0.key == wanted }?.valueString
    }
}

/// Dictionary encoding of a field (Schema.fbs `DictionaryEncoding`): the column stores `indexType`
/// indices into the dictionary with id `id`, whose values have the field's type.
public struct DictionaryEncoding: Sendable, Equatable {
    public var id: Int64
    public var indexType: IntType
    public var isOrdered: Bool

    public init(id: Int64, indexType: IntType = .int32, isOrdered: Bool = false) {
        self.id = id
        self.indexType = indexType
        self.isOrdered = isOrdered
    }
}

/// A named, typed column of a schema (Schema.fbs `Field`).
public struct Field: Sendable, Equatable {
    public var name: String
    /// The logical type; for a dictionary-encoded field, the type of the dictionary's values.
    public var type: DataType
    public var nullable: Bool
    public var dictionary: DictionaryEncoding?
    public var metadata: [KeyValue]

    public init(_ name: String, _ type: DataType, nullable: Bool = true, dictionary: DictionaryEncoding? = nil,
                metadata: [KeyValue] = []) {
        self.name = name
        self.type = type
        self.nullable = nullable
        self.dictionary = dictionary
        self.metadata = metadata
    }

    /// The extension name from `ARROW:extension:name` metadata, if this field is an extension type.
    public var extensionName: String? { self.metadata[key: "ARROW:extension:name"] }

    /// A short type description including dictionary and extension annotations.
    public var typeDescription: String {
        var text = self.type.description
        if let encoding = self.dictionary {
            text = "dictionary<values=\(text), indices=\(encoding.indexType)\(encoding.isOrdered ? ", ordered" : "")>"
        }
        if let name = self.extensionName { text = "extension<\(name)>[\(text)]" }
        return text
    }
}

/// Byte order of the bodies described by a schema.
public enum Endianness: Int16, Sendable, Equatable {
    case little = 0, big = 1
}

/// The schema of a stream or file (Schema.fbs `Schema`).
public struct Schema: Sendable, Equatable, CustomStringConvertible {
    public var fields: [Field]
    public var metadata: [KeyValue]
    public var endianness: Endianness
    /// Feature flags the writer declared (Schema.fbs `Feature`), kept as read.
    public var features: [Int64]

    public init(_ fields: [Field], metadata: [KeyValue] = [], endianness: Endianness = .little, features: [Int64] = []) {
        self.fields = fields
        self.metadata = metadata
        self.endianness = endianness
        self.features = features
    }

    public var description: String {
        self.fields.map { "\($0.name): \($0.typeDescription)\($0.nullable ? "" : " not null")" }.joined(separator: "\n")
    }
}
