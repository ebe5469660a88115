import Testing

@testable import GRPCWire

@Suite struct GRPCStatusTests {
    @Test func allSeventeenCodes() {
        #expect(GRPCStatus.Code.allCases.count == 17)
        #expect(GRPCStatus.Code.allCases.map(\.rawValue) == Array(0...16))
        #expect(GRPCStatus.Code.deadlineExceeded.description == "DEADLINE_EXCEEDED")
        #expect(GRPCStatus.Code.unauthenticated.description == "UNAUTHENTICATED")
    }

    @Test func grpcStatusHeaderParsing() {
        #expect(GRPCStatus.code(fromHeader: "0") == .ok)
        #expect(GRPCStatus.code(fromHeader: "16") == .unauthenticated)
        #expect(GRPCStatus.code(fromHeader: "17") == .unknown)
        #expect(GRPCStatus.code(fromHeader: "-1") == .unknown)
        #expect(GRPCStatus.code(fromHeader: "") == .unknown)
        #expect(GRPCStatus.code(fromHeader: "1a") == .unknown)
        #expect(GRPCStatus.code(fromHeader: "123") == .unknown)
    }

    @Test func httpAndResetMappings() {
        #expect(GRPCStatus.fromHTTPStatus(400).code == .internal)
        #expect(GRPCStatus.fromHTTPStatus(401).code == .unauthenticated)
        #expect(GRPCStatus.fromHTTPStatus(403).code == .permissionDenied)
        #expect(GRPCStatus.fromHTTPStatus(404).code == .unimplemented)
        for s in [429, 502, 503, 504] { #expect(GRPCStatus.fromHTTPStatus(s).code == .unavailable) }
        #expect(GRPCStatus.fromHTTPStatus(200).code == .unknown)
        #expect(GRPCStatus.fromResetCode(0x7).code == .unavailable)
        #expect(GRPCStatus.fromResetCode(0x8).code == .cancelled)
        #expect(GRPCStatus.fromResetCode(0xB).code == .resourceExhausted)
        #expect(GRPCStatus.fromResetCode(0xC).code == .permissionDenied)
        #expect(GRPCStatus.fromResetCode(0x2).code == .internal)
    }

    @Test func percentEncodingMatchesSpec() {
        #expect(GRPCMessageEncoding.encode("plain text") == "plain text")
        #expect(GRPCMessageEncoding.encode("100%") == "100%25")
        #expect(GRPCMessageEncoding.encode("\t\n") == "%09%0A")
        #expect(GRPCMessageEncoding.encode("☺") == "%E2%98%BA")
        #expect(GRPCMessageEncoding.encode("~ok") == "~ok")
        #expect(GRPCMessageEncoding.encode("\u{7F}") == "%7F")
        let special = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
        #expect(GRPCMessageEncoding.decode(Array(GRPCMessageEncoding.encode(special).utf8)) == special)
    }

    @Test func percentDecodingNeverFails() {
        #expect(GRPCMessageEncoding.decode(Array("a%2".utf8)) == "a%2")
        #expect(GRPCMessageEncoding.decode(Array("%zz%41".utf8)) == "%zzA")
        #expect(GRPCMessageEncoding.decode(Array("%".utf8)) == "%")
        #expect(GRPCMessageEncoding.decode(Array("%e2%98%ba".utf8)) == "☺")
        #expect(GRPCMessageEncoding.decode(Array("%FF".utf8)) == "\u{FFFD}")
    }
}

@Suite struct GRPCTimeoutTests {
    @Test func parsesEveryUnit() {
        #expect(GRPCTimeout.parse("1H") == .seconds(3600))
        #expect(GRPCTimeout.parse("2M") == .seconds(120))
        #expect(GRPCTimeout.parse("3S") == .seconds(3))
        #expect(GRPCTimeout.parse("4m") == .milliseconds(4))
        #expect(GRPCTimeout.parse("5u") == .microseconds(5))
        #expect(GRPCTimeout.parse("99999999n") == .nanoseconds(99_999_999))
    }

    @Test func rejectsMalformed() {
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S", "1 S"] {
            #expect(GRPCTimeout.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func encodesWithinEightDigits() {
        #expect(GRPCTimeout.encode(.milliseconds(1)) == "1000000n")
        #expect(GRPCTimeout.encode(.seconds(30)) == "30000000u")
        #expect(GRPCTimeout.encode(.seconds(1_000_000)) == "1000000S")
        #expect(GRPCTimeout.encode(.seconds(1_000_000_000)) == "16666667M")
        for d: Duration in [.nanoseconds(1), .milliseconds(250), .seconds(5), .seconds(86_400 * 400)] {
            let text = GRPCTimeout.encode(d)
            #expect(text.count <= 9)
            let back = GRPCTimeout.parse(text)
            #expect(back != nil && back! >= d, "\(d) → \(text)")
        }
    }
}

@Suite struct GRPCMetadataTests {
    @Test func base64RoundTripsPaddedAndUnpadded() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 200) }
            let text = Base64.encode(bytes)
            #expect(!text.contains("="))
            #expect(Base64.decode(Array(text.utf8)) == bytes)
            let padded = text + String(repeating: "=", count: (4 - text.count % 4) % 4)
            #expect(Base64.decode(Array(padded.utf8)) == bytes)
        }
        #expect(Base64.decode(Array("q6ur".utf8)) == [0xAB, 0xAB, 0xAB])
        #expect(Base64.decode(Array("a".utf8)) == nil)
        #expect(Base64.decode(Array("a$bc".utf8)) == nil)
    }

    @Test func binaryHeadersDecodeCommaJoinedValues() {
        var md = GRPCMetadata()
        md.addWire(name: "x-bin", value: Array("AQI,Aw==".utf8)[...])
        md.addWire(name: "x-text", value: Array("hello".utf8)[...])
        md.addWire(name: "y-bin", value: Array("!!".utf8)[...])
        #expect(md.binary("x-bin") == [1, 2, 3])
        #expect(md["x-text"] == "hello")
        #expect(md.binary("y-bin") == nil)
        var out = GRPCMetadata()
        out.add("Z-Bin", binary: [0xAB, 0xAB, 0xAB])
        #expect(out.wirePairs.map { $0.0 + "=" + $0.1 } == ["z-bin=q6ur"])
    }
}

@Suite struct MessageDeframerTests {
    static func frame(_ payloads: [[UInt8]]) -> [UInt8] {
        payloads.flatMap { grpcPrefix(length: $0.count) + $0 }
    }

    static func feed(_ deframer: inout MessageDeframer, _ bytes: ArraySlice<UInt8>, into out: inout [[UInt8]])
        throws(GRPCWireError)
    {
        var collected: [[UInt8]] = []
        try bytes.withUnsafeBufferPointer { (buf) throws(GRPCWireError) in
            try deframer.feed(buf) { m, _ in collected.append(m) }
        }
        out += collected
    }

    @Test func reassemblesAcrossEverySplit() throws {
        let messages: [[UInt8]] = [[], [1, 2, 3], Array(repeating: 7, count: 300), [9]]
        let wire = Self.frame(messages)
        for split in 0...wire.count {
            var d = MessageDeframer(maxMessageSize: 1 << 20)
            var out: [[UInt8]] = []
            try Self.feed(&d, wire[0..<split], into: &out)
            try Self.feed(&d, wire[split...], into: &out)
            #expect(out == messages, "split at \(split)")
            #expect(!d.hasPartialMessage)
        }
    }

    @Test func partialMessageIsVisible() throws {
        var d = MessageDeframer(maxMessageSize: 100)
        var out: [[UInt8]] = []
        try Self.feed(&d, [0, 0, 0, 0, 4, 1][...], into: &out)
        #expect(d.hasPartialMessage)
        #expect(out.isEmpty)
    }

    @Test func oversizedAndCompressedMessagesAreRejected() {
        var d = MessageDeframer(maxMessageSize: 100)
        var out: [[UInt8]] = []
        #expect(throws: GRPCWireError.messageTooLarge(length: 101, limit: 100)) {
            try Self.feed(&d, [0, 0, 0, 0, 101][...], into: &out)
        }
        var d2 = MessageDeframer(maxMessageSize: 100)
        #expect(throws: GRPCWireError.unexpectedCompression(offset: 0)) {
            try Self.feed(&d2, [1, 0, 0, 0, 1, 0][...], into: &out)
        }
        var d3 = MessageDeframer(maxMessageSize: Int(Int32.max))
        #expect(throws: GRPCWireError.messageTooLarge(length: Int(UInt32.max), limit: Int(Int32.max))) {
            try Self.feed(&d3, [0, 0xFF, 0xFF, 0xFF, 0xFF][...], into: &out)
        }
    }
}
