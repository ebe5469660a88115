import RESP
import Testing

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private func parse(_ s: String, limits: RESPParser.Limits = .init()) throws(RESPError) -> RESPValue? {
    try RESPParser(limits: limits).parse(bytes(s))?.value
}

@Suite struct RESPParserTests {
    @Test(arguments: [
        ("+OK\r\n", RESPValue.simpleString(bytes("OK"))),
        ("-ERR bad thing\r\n", .simpleError(bytes("ERR bad thing"))),
        (":0\r\n", .integer(0)),
        (":-9223372036854775808\r\n", .integer(.min)),
        (":9223372036854775807\r\n", .integer(.max)),
        ("$5\r\nhe\r\no\r\n", .bulkString(bytes("he\r\no"))),
        ("$0\r\n\r\n", .bulkString([])),
        ("$-1\r\n", .null),
        ("*-1\r\n", .null),
        ("_\r\n", .null),
        (",1.23\r\n", .double(1.23)),
        (",10\r\n", .double(10)),
        (",1e3\r\n", .double(1000)),
        (",-1.5E-2\r\n", .double(-0.015)),
        (",inf\r\n", .double(.infinity)),
        (",-inf\r\n", .double(-.infinity)),
        ("#t\r\n", .boolean(true)),
        ("#f\r\n", .boolean(false)),
        ("!21\r\nSYNTAX invalid syntax\r\n", .blobError(bytes("SYNTAX invalid syntax"))),
        ("=15\r\ntxt:Some string\r\n", .verbatimString(format: bytes("txt"), text: bytes("Some string"))),
        (
            "(3492890328409238509324850943850943825024385\r\n",
            .bigNumber(bytes("3492890328409238509324850943850943825024385"))
        ),
        ("(-12\r\n", .bigNumber(bytes("-12"))),
        ("*3\r\n:1\r\n$1\r\na\r\n_\r\n", .array([.integer(1), .bulkString(bytes("a")), .null])),
        ("*0\r\n", .array([])),
        ("~2\r\n+a\r\n+b\r\n", .set([.simpleString(bytes("a")), .simpleString(bytes("b"))])),
        (
            "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            .map([
                RESPPair(key: .simpleString(bytes("first")), value: .integer(1)),
                RESPPair(key: .simpleString(bytes("second")), value: .integer(2)),
            ])
        ),
        (
            ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            .push([.bulkString(bytes("message")), .bulkString(bytes("ch")), .bulkString(bytes("hi"))])
        ),
        (
            "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n",
            .attributed(
                attributes: [
                    RESPPair(
                        key: .simpleString(bytes("key-popularity")),
                        value: .map([RESPPair(key: .bulkString(bytes("a")), value: .double(0.19))]))
                ],
                value: .array([.integer(2)]))
        ),
        (
            "*2\r\n|1\r\n+ttl\r\n:3\r\n:1\r\n:2\r\n",
            .array([
                .attributed(
                    attributes: [RESPPair(key: .simpleString(bytes("ttl")), value: .integer(3))], value: .integer(1)),
                .integer(2),
            ])
        ),
        ("$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n", .bulkString(bytes("Hello word"))),
        ("*?\r\n:1\r\n:2\r\n.\r\n", .array([.integer(1), .integer(2)])),
        ("~?\r\n+a\r\n.\r\n", .set([.simpleString(bytes("a"))])),
        ("%?\r\n+a\r\n:1\r\n.\r\n", .map([RESPPair(key: .simpleString(bytes("a")), value: .integer(1))])),
    ])
    func parsesEveryType(wire: String, expected: RESPValue) throws {
        let result = try RESPParser().parse(bytes(wire))
        #expect(result?.value == expected)
        #expect(result?.length == wire.utf8.count)
    }

    @Test func parsesNaN() throws {
        for wire in [",nan\r\n", ",-nan\r\n"] {
            guard case .double(let d) = try parse(wire) else {
                Issue.record("not a double")
                return
            }
            #expect(d.isNaN)
        }
    }

    @Test func stopsAfterOneValue() throws {
        let result = try RESPParser().parse(bytes("+A\r\n+B\r\n"))
        #expect(result?.length == 4)
        #expect(result?.value == .simpleString(bytes("A")))
    }

    /// A reply that exercises every type, split at every offset: each proper prefix needs more bytes.
    static let everything =
        "*16\r\n+OK\r\n-ERR x\r\n:42\r\n$3\r\nabc\r\n$-1\r\n_\r\n,3.5\r\n#t\r\n!3\r\nERR\r\n=7\r\ntxt:abc\r\n(123\r\n"
        + "~1\r\n:1\r\n%1\r\n+k\r\n+v\r\n|1\r\n+a\r\n:1\r\n:5\r\n$?\r\n;2\r\nab\r\n;0\r\n*?\r\n:1\r\n.\r\n"

    @Test func truncationAtEveryOffsetNeedsMoreBytes() throws {
        let full = bytes(Self.everything)
        #expect(try RESPParser().parse(full)?.length == full.count)
        for cut in 0..<full.count {
            #expect(try RESPParser().parse(full[0..<cut]) == nil, "prefix of \(cut) bytes")
        }
        let push = bytes(">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n")
        for cut in 0..<push.count {
            #expect(try RESPParser().parse(push[0..<cut]) == nil)
        }
    }

    @Test func everyValueRoundTripsThroughTheEncoder() throws {
        guard let value = try parse(Self.everything) else {
            Issue.record("did not parse")
            return
        }
        let again = try RESPParser().parse(value.encoded)
        #expect(again?.value == value)
        #expect(again?.length == value.encoded.count)
    }

    @Test(arguments: [
        ("?x\r\n", "reply"),
        ("+OK\rX", "simple string"),
        ("+O\nK\r\n", "simple string"),
        (":12a\r\n", "integer"),
        (":\r\n", "integer"),
        (":99999999999999999999\r\n", "integer"),
        ("$3\r\nabcd\r\n", "bulk string"),
        ("$-2\r\n", "bulk string"),
        ("$x\r\n", "bulk string length"),
        ("_x\r\n", "null"),
        ("#x\r\n", "boolean"),
        ("#tt\r\n", "boolean"),
        (",1.2.x\r\n", "double"),
        (",\r\n", "double"),
        (",infinity\r\n", "double"),
        ("=3\r\ntxt\r\n", "verbatim string"),
        ("=5\r\ntxtab\r\n", "verbatim string"),
        ("(12.5\r\n", "big number"),
        ("!-1\r\n", "blob error"),
        ("!?\r\n", "blob error"),
        ("*1\r\n>1\r\n+x\r\n", "push"),
        (">0\r\n", "push"),
        (">?\r\n", "push"),
        ("$?\r\n:1\r\n", "streamed string"),
        ("*?\r\n:1\r\n.x\r\n", "streamed array end"),
        ("%?\r\n:1\r\n.\r\n", "streamed map"),
        (".\r\n", "reply"),
        (";3\r\nabc\r\n", "reply"),
    ])
    func rejectsMalformedInput(wire: String, what: String) {
        #expect {
            _ = try parse(wire)
        } throws: { error in
            guard case .malformed(let found, _, _, _) = error as? RESPError else { return false }
            return found == what
        }
    }

    @Test func enforcesBulkLengthLimit() {
        #expect(throws: RESPError.limitExceeded(what: "bulk string", limit: 1024, found: 1025, offset: 1)) {
            _ = try parse("$1025\r\n", limits: .init(maxBulkLength: 1024))
        }
        #expect(throws: RESPError.limitExceeded(what: "bulk string", limit: 512 << 20, found: Int.max, offset: 1)) {
            _ = try parse("$9223372036854775807\r\n")
        }
        #expect(throws: RESPError.limitExceeded(what: "streamed string length", limit: 4, found: 6, offset: 13)) {
            _ = try parse("$?\r\n;3\r\nabc\r\n;3\r\ndef\r\n;0\r\n", limits: .init(maxBulkLength: 4))
        }
    }

    @Test func enforcesElementLimitWithoutAllocating() {
        #expect(throws: RESPError.limitExceeded(what: "array", limit: 16 << 20, found: 1 << 40, offset: 1)) {
            _ = try parse("*1099511627776\r\n")
        }
        #expect(throws: RESPError.limitExceeded(what: "map", limit: 2, found: 3, offset: 1)) {
            _ = try parse("%3\r\n", limits: .init(maxElements: 4))
        }
        #expect(throws: RESPError.limitExceeded(what: "streamed array element count", limit: 2, found: 3, offset: 12)) {
            _ = try parse("*?\r\n:1\r\n:2\r\n:3\r\n.\r\n", limits: .init(maxElements: 2))
        }
        // A huge but allowed count with few bytes present just needs more bytes.
        #expect((try? parse("*16000000\r\n:1\r\n")) == .some(nil))
    }

    @Test func enforcesNestingDepth() throws {
        let deep = String(repeating: "*1\r\n", count: 100_000) + ":1\r\n"
        #expect(throws: RESPError.limitExceeded(what: "nesting depth", limit: 64, found: 65, offset: 256)) {
            _ = try parse(deep)
        }
        let attributes = String(repeating: "|1\r\n+a\r\n", count: 100) + ":1\r\n"
        #expect(throws: RESPError.self) { _ = try parse(attributes) }
        let ok = String(repeating: "*1\r\n", count: 64) + ":1\r\n"
        #expect(try parse(ok) != nil)
    }

    @Test func enforcesLineLength() {
        let long = "+" + String(repeating: "a", count: 2000)
        #expect(throws: RESPError.limitExceeded(what: "simple string line length", limit: 1000, found: 1001, offset: 1))
        {
            _ = try parse(long, limits: .init(maxLineLength: 1000))
        }
    }

    @Test func flippedBytesNeverTrap() throws {
        let full = bytes(Self.everything)
        var outcomes = [0, 0, 0]
        for i in 0..<full.count {
            for flip: UInt8 in [0x01, 0x20, 0x80, 0xFF] {
                var copy = full
                copy[i] ^= flip
                do {
                    outcomes[try RESPParser().parse(copy) == nil ? 0 : 1] += 1
                } catch {
                    outcomes[2] += 1
                }
            }
        }
        #expect(outcomes[2] > full.count)  // most flips are detected as malformed
    }
}

@Suite struct RESPEncoderTests {
    @Test func encodesCommandsAsArraysOfBulkStrings() {
        let command = RESPCommand("SET", "key", [UInt8]([0, 13, 10]), 42, -7 as Int64, 1.5, Double.infinity)
        #expect(
            command.encoded
                == bytes(
                    "*7\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\n\0\r\n\r\n$2\r\n42\r\n$2\r\n-7\r\n$3\r\n1.5\r\n$3\r\ninf\r\n"
                ))
        #expect(command.count == 7)
        #expect(RESPCommand("PING").encoded == bytes("*1\r\n$4\r\nPING\r\n"))
        let many = RESPCommand("DEL", arguments: (0..<12).map { "k\($0)" })
        #expect(many.encoded.starts(with: bytes("*13\r\n$3\r\nDEL\r\n$2\r\nk0\r\n")))
    }

    @Test func valueAccessors() {
        let map = RESPValue.map([RESPPair(key: .simpleString(bytes("proto")), value: .integer(3))])
        #expect(map["proto"]?.integer == 3)
        #expect(RESPValue.array([.bulkString(bytes("a")), .bulkString(bytes("1"))])["a"]?.integer == 1)
        #expect(RESPValue.simpleError(bytes("WRONGTYPE Operation against a key")).errorParts?.code == "WRONGTYPE")
        #expect(RESPValue.verbatimString(format: bytes("txt"), text: bytes("hi")).string == "hi")
        #expect(RESPValue.null.isNull)
    }
}

@Suite struct HashingTests {
    @Test func sha1Vectors() {
        #expect(SHA1.hex([UInt8]()) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex(bytes("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(
            SHA1.hex(bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(SHA1.hex(bytes(String(repeating: "a", count: 100_000))) == "c4d4b30851182fc4eb8675494d42fd7f17e29c93")
    }

    @Test func crc16AndSlots() {
        #expect(HashSlot.crc16(bytes("123456789")) == 0x31C3)
        let vectors: [(String, Int)] = [
            ("foo", 12182), ("bar", 5061), ("hello", 866), ("{user1000}.following", 3443), ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015), ("foo{bar}{zap}", 5061),
        ]
        for (key, slot) in vectors { #expect(HashSlot.slot(for: key) == slot, "\(key)") }
    }
}
