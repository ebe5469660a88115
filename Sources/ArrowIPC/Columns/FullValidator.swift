/// The O(data) checks the Flight server runs on untrusted input after ``StructuralValidator``:
/// offsets are monotonic and inside their data, UTF-8 is valid, union type ids are declared and dense
/// offsets inside their child, dictionary indices inside their dictionary, run ends increasing, and
/// view structs point inside their data buffers.
enum FullValidator {
    static func validate(_ array: ArrayData, name: String) throws(ArrowIPCError) {
        try self.validate(array, name: name, checkDictionaries: true)
    }

    private static func fail(_ name: String, _ reason: String) -> ArrowIPCError {
        .invalidData(field: name, reason: reason)
    }

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    static func validate(_ array: ArrayData, name: String, checkDictionaries: Bool) throws(ArrowIPCError) {
        if let encoding = array.encoding {
            try self.checkIndices(array, encoding: encoding, name: name)
            if checkDictionaries, let dictionary = array.dictionary {
                for chunk in dictionary.chunks { try self.validate(chunk, name: name, checkDictionaries: true) }
            }
            return
        }
        let childFields = array.type.children
        for (child, field) in zip(array.children, childFields) {
            try self.validate(child, name: "\(name).\(field.name)", checkDictionaries: checkDictionaries)
        }
        switch array.type {
        case .binary, .largeBinary:
            try self.checkOffsets(array.buffers[1], length: array.length, wide: array.type == .largeBinary,
                                  limit: array.buffers[2].count, name: name)
        case .utf8, .largeUtf8:
            let wide = array.type == .largeUtf8
            try self.checkOffsets(array.buffers[1], length: array.length, wide: wide, limit: array.buffers[2].count, name: name)
            try self.checkUTF8(array, wide: wide, name: name)
        case .list, .map:
            try self.checkOffsets(array.buffers[1], length: array.length, wide: false, limit: array.children[0].length, name: name)
        case .largeList:
            try self.checkOffsets(array.buffers[1], length: array.length, wide: true, limit: array.children[0].length, name: name)
        case .listView, .largeListView:
            try self.checkListViews(array, name: name)
        case let .union(mode, typeIDs, children):
            try self.checkUnion(array, mode: mode, typeIDs: typeIDs, childCount: children.count, name: name)
        case .runEndEncoded:
            try self.checkRunEnds(array, name: name)
        case .binaryView, .utf8View:
            try self.checkViews(array, name: name)
        default:
            break
        }
    }

    private static func checkOffsets(_ offsets: ArrowBuffer, length: Int, wide: Bool, limit: Int, name: String) throws(ArrowIPCError) {
        guard length > 0 else { return }
        let bad = wide ? self.firstBadOffset(offsets, length: length, limit: limit, as: Int64.self)
            : self.firstBadOffset(offsets, length: length, limit: limit, as: Int32.self)
        if let bad { throw self.fail(name, "offset \(bad) is negative, decreasing or beyond the data (\(limit))") }
    }

    /// Index of the first offset that is negative, smaller than its predecessor, or (the last) beyond `limit`.
    private static func firstBadOffset<T: FixedWidthInteger & SignedInteger>(_ offsets: ArrowBuffer, length: Int, limit: Int,
                                                                             as _: T.Type) -> Int? {
        offsets.bytes.withUnsafeBytes { raw in
            let width = MemoryLayout<T>.size
            var previous = T(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: T.self))
            if previous < 0 { return 0 }
            for index in 1...length {
                let next = T(littleEndian: raw.loadUnaligned(fromByteOffset: index * width, as: T.self))
                if next < previous { return index }
                previous = next
            }
            return Int(previous) > limit ? length : nil
        }
    }

    private static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        let count = bytes.count
        var accumulated: UInt64 = 0
        while index + 8 <= count {
            accumulated |= bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < count {
            accumulated |= UInt64(bytes[index])
            index += 1
        }
        return accumulated & 0x8080_8080_8080_8080 == 0
    }

    private static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    private static func checkUTF8(_ array: ArrayData, wide: Bool, name: String) throws(ArrowIPCError) {
        guard array.length > 0 else { return }
        let offsets = array.buffers[1]
        let data = array.buffers[2]
        let width = wide ? 8 : 4
        func offset(_ index: Int) -> Int {
            wide ? Int(offsets.load(Int64.self, at: index * width)) : Int(offsets.load(Int32.self, at: index * width))
        }
        let first = offset(0)
        let last = offset(array.length)
        let bad: Int? = data.bytes.withUnsafeBytes { raw in
            let range = UnsafeRawBufferPointer(rebasing: raw[first..<last])
            if self.isASCII(range) { return nil }
            for index in 0..<array.length {
                let start = offset(index)
                let end = offset(index + 1)
                if !self.isValidUTF8(UnsafeRawBufferPointer(rebasing: raw[start..<end])) { return index }
            }
            return nil
        }
        if let bad { throw self.fail(name, "value \(bad) is not valid UTF-8") }
    }

    private static func checkListViews(_ array: ArrayData, name: String) throws(ArrowIPCError) {
        let wide: Bool
        if case .largeListView = array.type { wide = true } else { wide = false }
        let childLength = array.children[0].length
        for index in 0..<array.length where array.isValid(index) {
            let offset = wide ? Int(array.buffers[1].load(Int64.self, at: index * 8)) : Int(array.buffers[1].load(Int32.self, at: index * 4))
            let size = wide ? Int(array.buffers[2].load(Int64.self, at: index * 8)) : Int(array.buffers[2].load(Int32.self, at: index * 4))
            guard offset >= 0, size >= 0, size <= childLength - offset else {
                throw self.fail(name, "list view \(index) (offset \(offset), size \(size)) exceeds the child length \(childLength)")
            }
        }
    }

    private static func checkUnion(_ array: ArrayData, mode: UnionMode, typeIDs: [Int32]?, childCount: Int,
                                   name: String) throws(ArrowIPCError) {
        var childForCode = [Int](repeating: -1, count: 128)
        // Decoded schemas hold ids in 0...127; a hand-built type might not, and its codes then match no child.
        for child in 0..<childCount {
            let code = Int(typeIDs.flatMap { child < $0.count ? $0[child] : nil } ?? Int32(clamping: child))
            if code >= 0, code < 128 { childForCode[code] = child }
        }
        for index in 0..<array.length {
            let code = Int(Int8(bitPattern: array.buffers[0][index]))
            guard code >= 0, childForCode[code] >= 0 else {
                throw self.fail(name, "slot \(index) has undeclared union type id \(code)")
            }
            if mode == .dense {
                let offset = Int(array.buffers[1].load(Int32.self, at: index * 4))
                let child = array.children[childForCode[code]]
                guard offset >= 0, offset < child.length else {
                    throw self.fail(name, "slot \(index) has dense offset \(offset) outside child of length \(child.length)")
                }
            }
        }
    }

    private static func checkRunEnds(_ array: ArrayData, name: String) throws(ArrowIPCError) {
        let runEnds = array.children[0]
        guard case let .int(type) = runEnds.type else { return }
        var previous = 0
        for index in 0..<runEnds.length {
            let end = RunEnds.load(runEnds.buffers[1], width: type.bitWidth, index: index)
            guard end > previous else {
                throw self.fail(name, "run end \(index) (\(end)) is not greater than the previous (\(previous))")
            }
            previous = end
        }
        guard previous >= array.length else {
            throw self.fail(name, "run ends cover \(previous) values, the array has \(array.length)")
        }
    }

    private static func checkIndices(_ array: ArrayData, encoding: DictionaryEncoding, name: String) throws(ArrowIPCError) {
        let size = array.dictionary?.length ?? 0
        let indices = array.buffers[1]
        let width = encoding.indexType.bitWidth / 8
        for index in 0..<array.length where array.isValid(index) {
            let value = IndexLoader.load(indices, type: encoding.indexType, index: index)
            guard value >= 0, value < size else {
                throw self.fail(name, "dictionary index \(value) at slot \(index) outside the dictionary of \(size) values (width \(width))")
            }
        }
    }

    private static func checkViews(_ array: ArrayData, name: String) throws(ArrowIPCError) {
        let views = array.buffers[1]
        let data = array.buffers.dropFirst(2)
        let isUTF8 = array.type == .utf8View
        for index in 0..<array.length where array.isValid(index) {
            let length = Int(views.load(Int32.self, at: index * 16))
            guard length >= 0 else { throw self.fail(name, "view \(index) has negative length \(length)") }
            if length <= 12 {
                if isUTF8 {
                    let valid = views.bytes.withUnsafeBytes { raw in
                        self.isValidUTF8(UnsafeRawBufferPointer(rebasing: raw[(index * 16 + 4)..<(index * 16 + 4 + length)]))
                    }
                    guard valid else { throw self.fail(name, "view \(index) is not valid UTF-8") }
                }
                continue
            }
            let bufferIndex = Int(views.load(Int32.self, at: index * 16 + 8))
            let offset = Int(views.load(Int32.self, at: index * 16 + 12))
            guard bufferIndex >= 0, bufferIndex < data.count else {
                throw self.fail(name, "view \(index) refers to data buffer \(bufferIndex) of \(data.count)")
            }
            let buffer = data[data.startIndex + bufferIndex]
            guard offset >= 0, length <= buffer.count - offset else {
                throw self.fail(name, "view \(index) (offset \(offset), length \(length)) exceeds its data buffer (\(buffer.count))")
            }
            for prefix in 0..<4 where views[index * 16 + 4 + prefix] != buffer[offset + prefix] {
                throw self.fail(name, "view \(index) prefix does not match its data")
            }
            if isUTF8 {
                let valid = buffer.bytes.withUnsafeBytes { raw in
                    self.isValidUTF8(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)]))
                }
                guard valid else { throw self.fail(name, "view \(index) is not valid UTF-8") }
            }
        }
    }
}

/// Reads integers of a run-time width.
enum RunEnds {
    static func load(_ buffer: ArrowBuffer, width: Int, index: Int) -> Int {
        switch width {
        case 16: return Int(buffer.load(Int16.self, at: index * 2))
        case 32: return Int(buffer.load(Int32.self, at: index * 4))
        default: return Int(buffer.load(Int64.self, at: index * 8))
        }
    }
}

/// Reads dictionary indices of any integer type as `Int` (uint64 values above Int.max become -1).
enum IndexLoader {
    static func load(_ buffer: ArrowBuffer, type: IntType, index: Int) -> Int {
        switch (type.bitWidth, type.isSigned) {
        case (8, true): return Int(Int8(bitPattern: buffer[index]))
        case (8, false): return Int(buffer[index])
        case (16, true): return Int(buffer.load(Int16.self, at: index * 2))
        case (16, false): return Int(buffer.load(UInt16.self, at: index * 2))
        case (32, true): return Int(buffer.load(Int32.self, at: index * 4))
        case (32, false): return Int(buffer.load(UInt32.self, at: index * 4))
        case (64, true): return Int(buffer.load(Int64.self, at: index * 8))
        default:
            let value = buffer.load(UInt64.self, at: index * 8)
            return value > UInt64(Int.max) ? -1 : Int(value)
        }
    }
}
