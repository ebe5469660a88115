import FlightProto
import Testing

@Suite struct ProtoCodecTests {
    // Vectors from the protobuf encoding guide: field 1 = 150, field 2 = "testing".
    @Test func decodesEncodingGuideVectors() throws {
        var r = ProtoReader([0x08, 0x96, 0x01, 0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6E, 0x67])
        let k1 = try #require(try r.nextField())
        #expect(k1 == ProtoFieldKey(number: 1, wireType: .varint, offset: 0))
        #expect(try r.readInt32(k1) == 150)
        let k2 = try #require(try r.nextField())
        #expect(k2.number == 2 && k2.wireType == .lengthDelimited)
        #expect(try r.readString(k2) == "testing")
        #expect(try r.nextField() == nil)
    }

    static let varintVectors: [(UInt64, [UInt8])] = [
        (0, [0]), (1, [1]), (127, [0x7F]), (128, [0x80, 0x01]), (300, [0xAC, 0x02]),
        (UInt64.max, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    ]

    @Test(arguments: Self.varintVectors)
    func varintRoundTrip(value: UInt64, encoded: [UInt8]) throws {
        var w = ProtoWriter()
        w.writeVarint(value)
        #expect(w.bytes == encoded)
        #expect(ProtoWriter.varintSize(value) == encoded.count)
        var r = ProtoReader(encoded)
        #expect(try r.readVarint() == value)
        #expect(r.isAtEnd)
    }

    @Test func zigzagMatchesSpec() {
        #expect(ZigZag.encode(Int64(0)) == 0)
        #expect(ZigZag.encode(Int64(-1)) == 1)
        #expect(ZigZag.encode(Int64(1)) == 2)
        #expect(ZigZag.encode(Int64(-2)) == 3)
        #expect(ZigZag.encode(Int32(2_147_483_647)) == 4_294_967_294)
        #expect(ZigZag.encode(Int32(-2_147_483_648)) == 4_294_967_295)
        for v: Int64 in [0, 1, -1, 12345, -98765, .max, .min] { #expect(ZigZag.decode(ZigZag.encode(v)) == v) }
        for v: Int32 in [0, 1, -1, .max, .min] { #expect(ZigZag.decode(ZigZag.encode(v)) == v) }
    }

    @Test func allScalarTypesRoundTrip() throws {
        var w = ProtoWriter()
        w.writeInt32(field: 1, -5)
        w.writeInt64(field: 2, -1_234_567_890_123)
        w.writeUInt64(field: 3, 1 << 40)
        w.writeSInt32(field: 4, -77)
        w.writeSInt64(field: 5, Int64.min)
        w.writeBool(field: 6, true)
        w.writeFixed64Field(field: 7, 0x0102_0304_0506_0708)
        w.writeFixed32Field(field: 8, 0xDEAD_BEEF)
        w.writeDouble(field: 9, -2.5)
        w.writeFloat(field: 10, 1.25)
        w.writeString(field: 11, "héllo")
        w.writeMessage(field: 12) { $0.writeUInt64(field: 1, 9) }
        w.writePackedVarints(field: 13, [1, 300, 0])
        w.writePackedFixed64(field: 14, [7, 8])
        w.writePackedFixed32(field: 15, [9])
        w.writeBytes(field: 1000, [1, 2, 3])
        // -5 as int32 takes 10 bytes on the wire.
        #expect(w.bytes[0...1] == [0x08, 0xFB])
        var r = ProtoReader(w.bytes)
        var varints: [UInt64] = []
        var f64: [UInt64] = []
        var f32: [UInt32] = []
        while let k = try r.nextField() {
            switch k.number {
            case 1: #expect(try r.readInt32(k) == -5)
            case 2: #expect(try r.readInt64(k) == -1_234_567_890_123)
            case 3: #expect(try r.readUInt64(k) == 1 << 40)
            case 4: #expect(try r.readSInt32(k) == -77)
            case 5: #expect(try r.readSInt64(k) == Int64.min)
            case 6: #expect(try r.readBool(k))
            case 7: #expect(try r.readFixed64Field(k) == 0x0102_0304_0506_0708)
            case 8: #expect(try r.readFixed32Field(k) == 0xDEAD_BEEF)
            case 9: #expect(try r.readDouble(k) == -2.5)
            case 10: #expect(try r.readFloat(k) == 1.25)
            case 11: #expect(try r.readString(k) == "héllo")
            case 12:
                var inner = ProtoReader(try r.readBytes(k))
                let ik = try #require(try inner.nextField())
                #expect(try inner.readUInt64(ik) == 9)
            case 13: try r.readPackedVarints(k, into: &varints)
            case 14: try r.readPackedFixed64(k, into: &f64)
            case 15: try r.readPackedFixed32(k, into: &f32)
            case 1000:
                #expect(k.wireType == .lengthDelimited)
                #expect(Array(try r.readBytes(k)) == [1, 2, 3])
            default: Issue.record("unexpected field \(k.number)")
            }
        }
        #expect(varints == [1, 300, 0])
        #expect(f64 == [7, 8])
        #expect(f32 == [9])
    }

    @Test func unpackedRepeatedIsAccepted() throws {
        var w = ProtoWriter()
        w.writeUInt64(field: 4, 10)
        w.writeUInt64(field: 4, 20)
        var r = ProtoReader(w.bytes)
        var values: [UInt64] = []
        while let k = try r.nextField() { try r.readPackedVarints(k, into: &values) }
        #expect(values == [10, 20])
    }

    @Test func bytesFieldsShareInputStorage() throws {
        var w = ProtoWriter()
        w.writeBytes(field: 1000, [UInt8](repeating: 0xAB, count: 4096))
        let message = w.bytes
        var r = ProtoReader(message)
        let k = try #require(try r.nextField())
        let body = try r.readBytes(k)
        #expect(body.startIndex == 4)  // tag C2 3E + 2-byte length
        message.withUnsafeBufferPointer { whole in
            body.withUnsafeBufferPointer { part in
                #expect(part.baseAddress == whole.baseAddress.map { $0 + 4 })
            }
        }
    }

    @Test func lengthDelimitedHeaderForZeroCopyBodies() {
        #expect(ProtoWriter.lengthDelimitedHeader(field: 1000, length: 300) == [0xC2, 0x3E, 0xAC, 0x02])
        #expect(ProtoWriter.lengthDelimitedHeader(field: 2, length: 0) == [0x12, 0x00])
    }

    @Test func unknownFieldsOfEveryWireTypeAreSkipped() throws {
        var w = ProtoWriter()
        w.writeUInt64(field: 50, 1)
        w.writeFixed64Field(field: 51, 2)
        w.writeBytes(field: 52, [1, 2])
        w.writeFixed32Field(field: 53, 3)
        w.writeTag(field: 54, wireType: .startGroup)
        w.writeUInt64(field: 1, 5)
        w.writeTag(field: 54, wireType: .endGroup)
        w.writeString(field: 1, "kept")
        var r = ProtoReader(w.bytes)
        var found: String?
        while let k = try r.nextField() {
            if k.number == 1 { found = try r.readString(k) } else { try r.skip(k) }
        }
        #expect(found == "kept")
    }
}

@Suite struct ProtoMalformedInputTests {
    static let sample: [UInt8] = {
        var w = ProtoWriter()
        w.writeUInt64(field: 1, 1 << 35)
        w.writeString(field: 2, "payload")
        w.writeFixed64Field(field: 3, 42)
        w.writeFixed32Field(field: 4, 7)
        w.writePackedVarints(field: 5, [300, 1, 70000])
        w.writeBytes(field: 1000, [UInt8](repeating: 9, count: 200))
        return w.bytes
    }()

    /// Reads every field with its declared type, returning how many were read.
    static func readAll(_ bytes: ArraySlice<UInt8>) throws(FlightProtoError) -> Int {
        var r = ProtoReader(bytes)
        var count = 0
        var values: [UInt64] = []
        while let k = try r.nextField() {
            switch k.number {
            case 1: _ = try r.readUInt64(k)
            case 2: _ = try r.readString(k)
            case 3: _ = try r.readFixed64Field(k)
            case 4: _ = try r.readFixed32Field(k)
            case 5: try r.readPackedVarints(k, into: &values)
            default: try r.skip(k)
            }
            count += 1
        }
        return count
    }

    @Test func sampleDecodes() throws {
        #expect(try Self.readAll(Self.sample[...]) == 6)
    }

    @Test func truncationAtEveryOffsetThrowsOrEndsOnFieldBoundary() {
        // Field boundaries of the sample: a prefix ending exactly there is a valid shorter message.
        var boundaries: Set<Int> = [0]
        var r = ProtoReader(Self.sample)
        while let k = try? r.nextField() {
            try? r.skip(k)
            boundaries.insert(r.readerIndex)
        }
        #expect(boundaries.count == 7)
        for cut in 0..<Self.sample.count {
            let prefix = Self.sample[0..<cut]
            do {
                _ = try Self.readAll(prefix)
                #expect(boundaries.contains(cut), "prefix of \(cut) bytes decoded although it cuts a field")
            } catch {
                #expect(!boundaries.contains(cut))
                switch error {
                case .truncated, .lengthOutOfRange: break
                default: Issue.record("prefix \(cut): unexpected \(error)")
                }
            }
        }
    }

    @Test func overlongVarintsAreRejected() {
        var r = ProtoReader([UInt8](repeating: 0x80, count: 10) + [0x01])
        #expect(throws: FlightProtoError.malformedVarint(offset: 0)) { try r.readVarint() }
        #expect(r.readerIndex == 0)
        // Tenth byte above 1 overflows 64 bits.
        var r2 = ProtoReader([UInt8](repeating: 0xFF, count: 9) + [0x02])
        #expect(throws: FlightProtoError.malformedVarint(offset: 0)) { try r2.readVarint() }
        var r3 = ProtoReader([UInt8](repeating: 0xFF, count: 5))
        #expect(throws: FlightProtoError.truncated(field: "varint", offset: 0, needed: 6, available: 5)) {
            try r3.readVarint()
        }
    }

    @Test func hugeLengthsAreRejectedWithoutAllocation() throws {
        // Field 2, length 2^63 - 1 then 3 bytes.
        var bytes: [UInt8] = [0x12]
        var w = ProtoWriter()
        w.writeVarint(UInt64(Int64.max))
        bytes += w.bytes + [1, 2, 3]
        var r = ProtoReader(bytes)
        do {
            let k = try #require(try r.nextField())
            #expect(throws: FlightProtoError.lengthOutOfRange(offset: 1, length: UInt64(Int64.max), available: 3)) {
                try r.readBytes(k)
            }
            #expect(r.readerIndex == 1)
        }
        var r2 = ProtoReader([0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        do {
            let k2 = try #require(try r2.nextField())
            #expect(throws: FlightProtoError.lengthOutOfRange(offset: 1, length: UInt64.max, available: 0)) {
                try r2.readBytes(k2)
            }
        }
    }

    @Test func invalidTagsAreRejected() throws {
        var r = ProtoReader([0x0E, 0x00])  // wire type 6
        #expect(throws: FlightProtoError.invalidWireType(offset: 0, found: 6)) { try r.nextField() }
        var r2 = ProtoReader([0x00, 0x00])  // field 0
        #expect(throws: FlightProtoError.invalidFieldNumber(offset: 0, found: 0)) { try r2.nextField() }
        var r3 = ProtoReader([0x0C])  // stray end-group of field 1
        do {
            let k = try #require(try r3.nextField())
            #expect(throws: FlightProtoError.invalidWireType(offset: 0, found: 4)) { try r3.skip(k) }
        }
    }

    @Test func wrongWireTypeAndBadValuesAreReported() throws {
        var r = ProtoReader([0x10, 0x01])  // field 2 as varint
        do {
            let k = try #require(try r.nextField())
            #expect(
                throws: FlightProtoError.wireTypeMismatch(
                    field: 2, offset: 0, expected: .lengthDelimited, found: .varint)
            ) { try r.readString(k) }
        }
        var r2 = ProtoReader([0x12, 0x02, 0xC3, 0x28])  // invalid UTF-8
        do {
            let k = try #require(try r2.nextField())
            #expect(throws: FlightProtoError.invalidUTF8(field: 2, offset: 1)) { try r2.readString(k) }
        }
        var r3 = ProtoReader([0x08, 0x80, 0x80, 0x80, 0x80, 0x10])  // 2^32 as uint32
        do {
            let k = try #require(try r3.nextField())
            #expect(throws: FlightProtoError.valueOutOfRange(field: 1, offset: 1, value: 1 << 32)) {
                try r3.readUInt32(k)
            }
        }
        var r4 = ProtoReader([0x2A, 0x02, 0x01, 0x80])  // packed varints with a cut element
        do {
            let k = try #require(try r4.nextField())
            var values: [UInt64] = []
            #expect(throws: FlightProtoError.truncated(field: "packed field 5", offset: 3, needed: 2, available: 1)) {
                try r4.readPackedVarints(k, into: &values)
            }
            #expect(values.isEmpty)
        }
    }

    @Test func deeplyNestedGroupsHitTheLimit() throws {
        let depth = 100
        var bytes: [UInt8] = []
        for _ in 0..<depth { bytes.append(0x0B) }  // start group, field 1
        for _ in 0..<depth { bytes.append(0x0C) }
        var r = ProtoReader(bytes)
        do {
            let k = try #require(try r.nextField())
            #expect(throws: FlightProtoError.nestingTooDeep(offset: 64, limit: 64)) { try r.skip(k) }
        }
    }

    /// The byte offset an error names (where the bad field, tag or length starts).
    static func offset(of error: FlightProtoError) -> Int {
        switch error {
        case .truncated(_, let offset, _, _), .malformedVarint(let offset), .invalidWireType(let offset, _),
            .invalidFieldNumber(let offset, _), .lengthOutOfRange(let offset, _, _),
            .wireTypeMismatch(_, let offset, _, _), .invalidUTF8(_, let offset), .valueOutOfRange(_, let offset, _),
            .nestingTooDeep(let offset, _):
            return offset
        }
    }

    @Test func flippedBytesNeverTrap() {
        // Every single-byte corruption either decodes or throws a FlightProtoError naming an offset inside the
        // message; it never traps. The last 200 bytes are field 1000's payload: a flip there changes a value,
        // never the structure, so those messages must still decode into all six fields.
        let payload = (Self.sample.count - 200)..<Self.sample.count
        var decoded = 0
        var rejected = 0
        for i in 0..<Self.sample.count {
            for flip: UInt8 in [0x01, 0x80, 0xFF] {
                var bytes = Self.sample
                bytes[i] ^= flip
                do {
                    let fields = try Self.readAll(bytes[...])
                    decoded += 1
                    if payload.contains(i) { #expect(fields == 6, "flip \(flip) at \(i) in the payload") }
                } catch {
                    rejected += 1
                    #expect(!payload.contains(i), "flip \(flip) at \(i) in the payload was rejected: \(error)")
                    #expect((0...bytes.count).contains(Self.offset(of: error)), "flip at \(i): \(error)")
                    #expect(!error.description.isEmpty)
                }
            }
        }
        // Both outcomes occur: tags and lengths are damaged by some flips, values only by others.
        #expect(decoded >= 600 && rejected > 0, "decoded \(decoded), rejected \(rejected)")
    }
}
