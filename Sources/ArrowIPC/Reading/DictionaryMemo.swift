/// The dictionaries a reader has seen, by id, and the value field each id belongs to.
struct DictionaryMemo {
    private(set) var dictionaries: [Int64: DictionaryValues] = [:]
    private var valueFields: [Int64: Field] = [:]
    let allowReplacement: Bool

    init(schema: Schema, allowReplacement: Bool) throws(ArrowIPCError) {
        self.allowReplacement = allowReplacement
        for field in schema.fields { try self.collect(field) }
    }

    private mutating func collect(_ field: Field) throws(ArrowIPCError) {
        if let encoding = field.dictionary {
            var valueField = field
            valueField.dictionary = nil
            if let existing = self.valueFields[encoding.id], existing.type != valueField.type {
                throw .invalidMessage(what: "Schema", reason: "dictionary \(encoding.id) is used with two value types")
            }
            self.valueFields[encoding.id] = valueField
        }
        for child in field.type.children { try self.collect(child) }
    }

    /// Loads a dictionary batch and records it (replacing or appending).
    mutating func add(_ header: DictionaryBatchHeader, body: ArrowBuffer, version: MetadataVersion,
                      fullValidation: Bool, limits: IPCReadLimits = .default) throws(ArrowIPCError) {
        guard let valueField = self.valueFields[header.id] else {
            throw .invalidMessage(what: "DictionaryBatch", reason: "id \(header.id) is not used by the schema")
        }
        var loader = try ArrayLoader(header: header.data, body: body, version: version, dictionaries: self.dictionaries,
                                     limits: limits)
        let values = try loader.load([valueField])[0]
        if fullValidation { try FullValidator.validate(values, name: "dictionary \(header.id)") }
        if header.isDelta, let existing = self.dictionaries[header.id] {
            // O(1): the lineage grows in place (a chain of deltas costs O(total size)).
            self.dictionaries[header.id] = try existing.appending(values)
        } else {
            if self.dictionaries[header.id] != nil, !self.allowReplacement {
                throw .invalidMessage(what: "DictionaryBatch \(header.id)", reason: "IPC files cannot replace a dictionary")
            }
            self.dictionaries[header.id] = DictionaryValues(values)
        }
    }
}
