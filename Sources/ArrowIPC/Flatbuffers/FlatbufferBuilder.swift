/// Builds flatbuffers back to front, as the reference builders do: children are written before the
/// tables that point at them, so every uoffset points forward in the finished buffer.
///
/// Positions (`FlatbufferBuilder.Offset`) are measured from the end of the buffer. Used only with our
/// own, well-formed inputs.
struct FlatbufferBuilder {
    typealias Offset = Int

    private var storage: [UInt8]
    /// Index of the first used byte; bytes `storage[head...]` are the buffer built so far.
    private var head: Int
    private var minAlignment = 1
    private var fields: [(id: Int, offset: Offset)] = []
    private var tableStart: Offset = 0

    init(capacity: Int = 256) {
        self.storage = [UInt8](repeating: 0, count: max(capacity, 16))
        self.head = self.storage.count
    }

    /// Bytes written so far (the position of the next byte, from the end).
    var size: Offset { self.storage.count - self.head }

    private mutating func reserve(_ count: Int) {
        guard count > self.head else { return }
        let used = self.size
        var newCount = self.storage.count * 2
        while newCount - used < count { newCount *= 2 }
        var grown = [UInt8](repeating: 0, count: newCount)
        grown.replaceSubrange((newCount - used)..<newCount, with: self.storage[self.head...])
        self.storage = grown
        self.head = newCount - used
    }

    /// Pads so that after `additional` more bytes the size is a multiple of `alignment`.
    private mutating func prepare(alignment: Int, additional: Int) {
        self.minAlignment = max(self.minAlignment, alignment)
        let padding = (~(self.size + additional) + 1) & (alignment - 1)
        self.reserve(padding + additional)
        for _ in 0..<padding {
            self.head -= 1
            self.storage[self.head] = 0
        }
    }

    private mutating func putRaw<T: FixedWidthInteger>(_ value: T) {
        let width = MemoryLayout<T>.size
        self.head -= width
        var little = value.littleEndian
        withUnsafeBytes(of: &little) { raw in
            for index in 0..<width { self.storage[self.head + index] = raw[index] }
        }
    }

    /// Appends an aligned scalar and returns its position.
    @discardableResult
    mutating func push<T: FixedWidthInteger>(_ value: T) -> Offset {
        self.prepare(alignment: MemoryLayout<T>.size, additional: 0)
        self.reserve(MemoryLayout<T>.size)
        self.putRaw(value)
        return self.size
    }

    /// Appends a uoffset pointing at `target`.
    private mutating func pushOffset(_ target: Offset) {
        self.prepare(alignment: 4, additional: 0)
        self.reserve(4)
        self.putRaw(UInt32(self.size + 4 - target))
    }

    // MARK: Strings and vectors

    mutating func createString(_ bytes: some Collection<UInt8>) -> Offset {
        self.prepare(alignment: 4, additional: bytes.count + 1)
        self.reserve(bytes.count + 1)
        self.head -= 1
        self.storage[self.head] = 0
        self.head -= bytes.count
        var index = self.head
        for byte in bytes {
            self.storage[index] = byte
            index += 1
        }
        self.putRawLength(bytes.count)
        return self.size
    }

    mutating func createString(_ string: String) -> Offset {
        self.createString(Array(string.utf8))
    }

    private mutating func putRawLength(_ count: Int) {
        self.reserve(4)
        self.putRaw(UInt32(count))
    }

    /// A vector of uoffsets (tables or strings).
    mutating func createOffsetVector(_ targets: [Offset]) -> Offset {
        self.prepare(alignment: 4, additional: 4 * (targets.count + 1))
        for target in targets.reversed() { self.pushOffset(target) }
        self.putRawLength(targets.count)
        return self.size
    }

    /// A vector of scalars.
    mutating func createScalarVector<T: FixedWidthInteger>(_ values: [T]) -> Offset {
        let width = MemoryLayout<T>.size
        self.prepare(alignment: max(4, width), additional: width * values.count)
        self.prepare(alignment: 4, additional: width * values.count + 4)
        self.reserve(width * values.count + 4)
        for value in values.reversed() { self.putRaw(value) }
        self.putRawLength(values.count)
        return self.size
    }

    /// A vector of structs made of 8-byte-aligned 64-bit words (FieldNode, Buffer, Block).
    mutating func createStructVector(_ structs: [[Int64]], structSize: Int) -> Offset {
        self.prepare(alignment: 8, additional: structSize * structs.count)
        self.prepare(alignment: 4, additional: structSize * structs.count + 4)
        self.reserve(structSize * structs.count + 4)
        for words in structs.reversed() {
            let padding = structSize - 8 * words.count
            for _ in 0..<padding {
                self.head -= 1
                self.storage[self.head] = 0
            }
            for word in words.reversed() { self.putRaw(word) }
        }
        self.putRawLength(structs.count)
        return self.size
    }

    // MARK: Tables

    mutating func startTable() {
        self.fields.removeAll(keepingCapacity: true)
        self.tableStart = self.size
    }

    mutating func add<T: FixedWidthInteger>(_ id: Int, _ value: T, default defaultValue: T) {
        guard value != defaultValue else { return }
        self.fields.append((id, self.push(value)))
    }

    mutating func add(_ id: Int, _ value: Bool, default defaultValue: Bool) {
        self.add(id, UInt8(value ? 1 : 0), default: UInt8(defaultValue ? 1 : 0))
    }

    mutating func addOffset(_ id: Int, _ target: Offset?) {
        guard let target else { return }
        self.pushOffset(target)
        self.fields.append((id, self.size))
    }

    /// Adds an inline struct of 64-bit words (Block in Footer is a vector, so only used for completeness).
    mutating func endTable() -> Offset {
        self.prepare(alignment: 4, additional: 0)
        self.reserve(4)
        self.putRaw(Int32(0))
        let tablePosition = self.size
        let maxID = self.fields.map(\.id).max() ?? -1
        var slots = [UInt16](repeating: 0, count: maxID + 1)
        for field in self.fields { slots[field.id] = UInt16(tablePosition - field.offset) }
        let tableSize = tablePosition - self.tableStart
        self.reserve(2 * (slots.count + 2))
        for slot in slots.reversed() { self.putRaw(slot) }
        self.putRaw(UInt16(tableSize))
        self.putRaw(UInt16(2 * (slots.count + 2)))
        let vtablePosition = self.size
        // soffset from the table to its vtable: table address - vtable address.
        var soffset = Int32(vtablePosition - tablePosition).littleEndian
        let tableIndex = self.storage.count - tablePosition
        withUnsafeBytes(of: &soffset) { raw in
            for index in 0..<4 { self.storage[tableIndex + index] = raw[index] }
        }
        self.fields.removeAll(keepingCapacity: true)
        return tablePosition
    }

    /// Finishes the buffer with `root` as its root table and returns the bytes.
    mutating func finish(root: Offset) -> [UInt8] {
        self.prepare(alignment: max(self.minAlignment, 4), additional: 4)
        self.pushOffset(root)
        return Array(self.storage[self.head...])
    }
}
