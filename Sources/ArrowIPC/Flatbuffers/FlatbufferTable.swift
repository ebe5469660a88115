/// Bounds-checked reads of flatbuffer data (Arrow's IPC metadata), following PROTOCOLS.md §1.2.
///
/// Every offset read from the bytes is checked before it is followed, so malformed or hostile metadata
/// throws ``ArrowIPCError/invalidFlatbuffer(what:offset:reason:)`` or ``ArrowIPCError/truncated(what:offset:needed:available:)``
/// and never traps.
struct FlatbufferBytes {
    let bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
    }

    var count: Int { self.bytes.count }

    /// Reads a little-endian integer at zero-based `offset`.
    func read<T: FixedWidthInteger>(_: T.Type, at offset: Int, what: @autoclosure () -> String) throws(ArrowIPCError) -> T {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= self.bytes.count - size else {
            throw .truncated(what: what(), offset: offset, needed: size, available: max(0, self.bytes.count - max(offset, 0)))
        }
        return self.bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    /// The root table of the buffer.
    func rootTable(what: String) throws(ArrowIPCError) -> FlatbufferTable {
        let rootOffset = try self.read(UInt32.self, at: 0, what: "\(what) root offset")
        return try FlatbufferTable(buffer: self, position: Int(rootOffset), what: what)
    }
}

/// One flatbuffer table whose vtable has been checked against the buffer.
struct FlatbufferTable {
    let buffer: FlatbufferBytes
    /// Zero-based position of the table in `buffer`.
    let position: Int
    private let vtablePosition: Int
    private let vtableSize: Int
    private let tableSize: Int
    /// Where the table hangs (built only when an error needs it): its parent's path and its own name.
    private let parent: String
    private let name: String
    var what: String { self.parent.isEmpty ? self.name : self.parent + "." + self.name }

    init(buffer: FlatbufferBytes, position: Int, what: String) throws(ArrowIPCError) {
        try self.init(buffer: buffer, position: position, parent: "", name: what)
    }

    init(buffer: FlatbufferBytes, position: Int, parent: String, name: String) throws(ArrowIPCError) {
        var what: String { parent.isEmpty ? name : parent + "." + name }
        guard position >= 0, position <= buffer.count - 4, position & 3 == 0 else {
            throw .invalidFlatbuffer(what: what, offset: position, reason: "table offset outside the buffer or misaligned")
        }
        let soffset = try buffer.read(Int32.self, at: position, what: "\(what) vtable offset")
        let (vtable, overflow) = position.subtractingReportingOverflow(Int(soffset))
        guard !overflow, vtable >= 0, vtable <= buffer.count - 4, vtable & 1 == 0 else {
            throw .invalidFlatbuffer(what: what, offset: position, reason: "vtable at \(vtable) outside the buffer")
        }
        let vtableSize = Int(try buffer.read(UInt16.self, at: vtable, what: "\(what) vtable size"))
        let tableSize = Int(try buffer.read(UInt16.self, at: vtable + 2, what: "\(what) table size"))
        guard vtableSize >= 4, vtableSize & 1 == 0, vtable + vtableSize <= buffer.count else {
            throw .invalidFlatbuffer(what: what, offset: vtable, reason: "vtable size \(vtableSize) invalid")
        }
        guard tableSize >= 4, position + tableSize <= buffer.count else {
            throw .invalidFlatbuffer(what: what, offset: position, reason: "table size \(tableSize) is invalid or exceeds the buffer")
        }
        self.buffer = buffer
        self.position = position
        self.vtablePosition = vtable
        self.vtableSize = vtableSize
        self.tableSize = tableSize
        self.parent = parent
        self.name = name
    }

    /// Absolute position of field `id` if present, checked so that `size` bytes fit inside the table.
    private func fieldPosition(_ id: Int, size: Int, name: String) throws(ArrowIPCError) -> Int? {
        let slot = 4 + 2 * id
        guard slot + 2 <= self.vtableSize else { return nil }
        let relative = Int(try self.buffer.read(UInt16.self, at: self.vtablePosition + slot, what: "\(self.what).\(name) slot"))
        guard relative != 0 else { return nil }
        guard relative + size <= self.tableSize else {
            throw .invalidFlatbuffer(what: "\(self.what).\(name)", offset: self.position + relative,
                                     reason: "field lies outside its table")
        }
        return self.position + relative
    }

    /// A scalar field, or `defaultValue` when absent.
    func scalar<T: FixedWidthInteger>(_ id: Int, _ name: String, default defaultValue: T) throws(ArrowIPCError) -> T {
        guard let at = try self.fieldPosition(id, size: MemoryLayout<T>.size, name: name) else { return defaultValue }
        return try self.buffer.read(T.self, at: at, what: "\(self.what).\(name)")
    }

    /// A boolean field, or `defaultValue` when absent.
    func bool(_ id: Int, _ name: String, default defaultValue: Bool) throws(ArrowIPCError) -> Bool {
        try self.scalar(id, name, default: UInt8(defaultValue ? 1 : 0)) != 0
    }

    /// Follows the uoffset stored in field `id`, returning the absolute target position.
    private func followOffset(_ id: Int, _ name: String) throws(ArrowIPCError) -> Int? {
        guard let at = try self.fieldPosition(id, size: 4, name: name) else { return nil }
        let relative = try self.buffer.read(UInt32.self, at: at, what: "\(self.what).\(name) offset")
        let target = at + Int(relative)
        guard relative != 0, target < self.buffer.count else {
            throw .invalidFlatbuffer(what: "\(self.what).\(name)", offset: at, reason: "offset \(relative) points outside the buffer")
        }
        return target
    }

    /// A sub-table field.
    func table(_ id: Int, _ name: String) throws(ArrowIPCError) -> FlatbufferTable? {
        guard let target = try self.followOffset(id, name) else { return nil }
        return try FlatbufferTable(buffer: self.buffer, position: target, parent: self.what, name: name)
    }

    /// A vector field: the position of its first element and its element count, checked to fit the buffer.
    func vector(_ id: Int, _ name: String, elementSize: Int) throws(ArrowIPCError) -> (start: Int, count: Int)? {
        guard let target = try self.followOffset(id, name) else { return nil }
        let count = Int(try self.buffer.read(UInt32.self, at: target, what: "\(self.what).\(name) length"))
        let start = target + 4
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementSize)
        guard !overflow, bytes <= self.buffer.count - start else {
            throw .truncated(what: "\(self.what).\(name) (\(count) elements)", offset: start, needed: bytes,
                             available: self.buffer.count - start)
        }
        return (start, count)
    }

    /// A string field (bytes, decoded as UTF-8 with invalid sequences replaced).
    func string(_ id: Int, _ name: String) throws(ArrowIPCError) -> String? {
        guard let bytes = try self.byteString(id, name) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A string field as raw bytes.
    func byteString(_ id: Int, _ name: String) throws(ArrowIPCError) -> ArraySlice<UInt8>? {
        guard let (start, count) = try self.vector(id, name, elementSize: 1) else { return nil }
        let base = self.buffer.bytes.startIndex + start
        return self.buffer.bytes[base..<(base + count)]
    }

    /// A vector of tables.
    ///
    /// - Parameter maxCount: the most elements accepted (checked before any is read).
    func tables(_ id: Int, _ name: String, maxCount: Int = .max) throws(ArrowIPCError) -> [FlatbufferTable] {
        guard let (start, count) = try self.vector(id, name, elementSize: 4) else { return [] }
        guard count <= maxCount else {
            throw .limitExceeded(what: "number of \(self.what).\(name) entries", limit: max(maxCount, 0), found: count)
        }
        var result: [FlatbufferTable] = []
        result.reserveCapacity(count)
        for index in 0..<count {
            let at = start + 4 * index
            let relative = try self.buffer.read(UInt32.self, at: at, what: "\(self.what).\(name)[\(index)]")
            let target = at + Int(relative)
            guard relative != 0, target < self.buffer.count else {
                throw .invalidFlatbuffer(what: "\(self.what).\(name)[\(index)]", offset: at, reason: "offset points outside the buffer")
            }
            result.append(try FlatbufferTable(buffer: self.buffer, position: target, what: "\(self.what).\(name)[\(index)]"))
        }
        return result
    }

    /// A vector of scalars.
    func scalars<T: FixedWidthInteger>(_ id: Int, _ name: String, as _: T.Type) throws(ArrowIPCError) -> [T] {
        guard let (start, count) = try self.vector(id, name, elementSize: MemoryLayout<T>.size) else { return [] }
        var result: [T] = []
        result.reserveCapacity(count)
        for index in 0..<count {
            result.append(try self.buffer.read(T.self, at: start + index * MemoryLayout<T>.size, what: "\(self.what).\(name)"))
        }
        return result
    }

    /// Whether field `id` is present.
    func has(_ id: Int) throws(ArrowIPCError) -> Bool {
        try self.fieldPosition(id, size: 0, name: "field \(id)") != nil
    }
}
