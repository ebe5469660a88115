import FlightProto
import Foundation
import Testing

// Byte compatibility of the Flight.proto codecs with the reference protobuf implementation: the fixtures in
// Tests/Fixtures/FlightProto were written by Python protobuf (see generate.py there); every value below is
// the one generate.py used for the case of the same name.

// MARK: - Fixture files and manifest

enum FlightFixtures {
    /// Package root = three levels up from this file (Tests/FlightProtoTests/<file>).
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tests/Fixtures/FlightProto")

    static func load(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: self.directory.appendingPathComponent(name + ".bin")))
    }

    /// One top-level field of a fixture, located by generate.py's own wire walker.
    struct TopField: Sendable, Equatable {
        let number: Int
        let wireType: UInt8
        /// Offset of the tag.
        let start: Int
        /// Offset just after the tag.
        let valueStart: Int
        /// Offset after the length prefix (wire type 2), else `valueStart`.
        let payloadStart: Int
        /// Offset just after the field.
        let end: Int
    }

    struct Entry: Sendable {
        let name: String
        let message: String
        let size: Int
        let fields: [TopField]
    }

    /// manifest.txt, by case name (in file order in `entries`).
    static let entries: [Entry] = {
        guard
            let text = try? String(
                contentsOf: FlightFixtures.directory.appendingPathComponent("manifest.txt"), encoding: .utf8)
        else { return [] }
        var result: [Entry] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard columns.count == 6, let size = Int(columns[2]) else { continue }
            var fields: [TopField] = []
            if columns[4] != "-" {
                for field in columns[4].split(separator: ";") {
                    let n = field.split(separator: ":").compactMap { Int($0) }
                    guard n.count == 6 else { continue }
                    fields.append(
                        TopField(
                            number: n[0], wireType: UInt8(n[1]), start: n[2], valueStart: n[3], payloadStart: n[4],
                            end: n[5]))
                }
            }
            result.append(Entry(name: String(columns[0]), message: String(columns[1]), size: size, fields: fields))
        }
        return result
    }()

    static func entry(_ name: String) -> Entry? {
        self.entries.first { $0.name == name }
    }
}

// MARK: - Values used by generate.py

/// n bytes, byte i = (i * mul + add) mod 256 (generate.py's `pattern`).
func pattern(_ n: Int, _ mul: Int, _ add: Int) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: $0 &* mul &+ add) }
}

func bytes(_ text: String) -> ArraySlice<UInt8> { Array(text.utf8)[...] }

func bytes(_ prefix: [UInt8], _ text: String, _ suffix: [UInt8] = []) -> ArraySlice<UInt8> {
    (prefix + Array(text.utf8) + suffix)[...]
}

/// Whether two messages of possibly different types are equal.
func messagesEqual(_ lhs: any ProtoMessage, _ rhs: any ProtoMessage) -> Bool {
    func open<M: ProtoMessage>(_ lhs: M) -> Bool { (rhs as? M) == lhs }
    return open(lhs)
}

/// A short description of where two byte strings first differ.
func describeDifference(_ produced: [UInt8], _ expected: [UInt8]) -> String {
    let common = zip(produced, expected).prefix { $0 == $1 }.count
    func window(_ b: [UInt8]) -> String {
        let lo = max(0, common - 8)
        let hi = min(b.count, common + 24)
        return b[lo..<hi].map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined(separator: " ")
    }
    return "produced \(produced.count) bytes, reference \(expected.count); first difference at byte \(common): "
        + "produced [\(window(produced))] reference [\(window(expected))] (from byte \(max(0, common - 8)))"
}

struct FlightCase: Sendable, CustomTestStringConvertible {
    let name: String
    /// The protobuf full name of the message.
    let message: String
    let expected: any ProtoMessage
    let decode: @Sendable (ArraySlice<UInt8>) throws(FlightProtoError) -> any ProtoMessage
    /// Whether encoding `expected` must give the fixture (false for concatenations of two messages).
    let encodes: Bool
    /// Whether a decoded value equals what the reference reads (default: `==` with `expected`).
    let matches: @Sendable (any ProtoMessage) -> Bool

    var testDescription: String { self.name }

    static func make<M: ProtoMessage>(
        _ name: String, _ message: String, _ value: M, encodes: Bool = true,
        matches: (@Sendable (M) -> Bool)? = nil
    ) -> FlightCase {
        FlightCase(
            name: name, message: "arrow.flight.protocol." + message, expected: value,
            decode: { (input: ArraySlice<UInt8>) throws(FlightProtoError) -> any ProtoMessage in
                try M(serializedBytes: input)
            },
            encodes: encodes,
            matches: { decoded in
                guard let decoded = decoded as? M else { return false }
                return matches?(decoded) ?? (decoded == value)
            })
    }
}

enum FlightCases {
    static func endpoint1() -> FlightEndpoint {
        var endpoint = FlightEndpoint(
            ticket: Ticket(bytes("tkt-1")),
            locations: [Location(uri: "grpc+tcp://node-a:8815"), Location(uri: "grpc+tls://node-b.example:443")])
        endpoint.expirationTime = ProtoTimestamp(seconds: 1_767_225_600, nanos: 123_456_789)
        endpoint.appMetadata = bytes("ep-meta")
        return endpoint
    }

    static func endpoint2() -> FlightEndpoint {
        FlightEndpoint(
            ticket: Ticket(pattern(40, 3, 1)), locations: [Location(uri: "arrow-flight-reuse-connection://?")])
    }

    static func flightInfoFull() -> FlightInfo {
        var info = FlightInfo()
        info.schema = pattern(200, 13, 255)[...]
        info.flightDescriptor = FlightDescriptor(path: ["warehouse", "orders"])
        info.endpoints = [endpoint1(), endpoint2()]
        info.totalRecords = 1_234_567_890_123
        info.totalBytes = -1
        info.ordered = true
        info.appMetadata = bytes("info-meta")
        return info
    }

    static func flightDataFull() -> FlightData {
        var data = FlightData()
        data.flightDescriptor = FlightDescriptor(path: ["upload", "t1"])
        data.dataHeader = pattern(104, 17, 9)[...]
        data.appMetadata = bytes("batch-0")
        data.dataBody = pattern(300, 7, 1)[...]
        return data
    }

    static func options(_ entries: [(name: String, value: SessionOptionValue?)]) -> SessionOptions {
        SessionOptions(entries)
    }

    static let all: [FlightCase] = {
        var cases: [FlightCase] = []
        func add<M: ProtoMessage>(_ name: String, _ message: String, _ value: M) {
            cases.append(.make(name, message, value))
        }
        /// A concatenation A + B: the value is what the reference reads (A.MergeFrom(B)); no encoding check.
        func merged<M: ProtoMessage>(
            _ name: String, _ message: String, _ value: M, matches: (@Sendable (M) -> Bool)? = nil
        ) {
            cases.append(.make(name, message, value, encodes: false, matches: matches))
        }

        // Every message type.
        add(
            "handshake_request", "HandshakeRequest",
            HandshakeMessage(protocolVersion: 7, payload: bytes([0x00, 0x01], "hello", [0xFF])))
        add(
            "handshake_response", "HandshakeResponse",
            HandshakeMessage(protocolVersion: .max, payload: bytes("token-123")))
        add("basic_auth", "BasicAuth", BasicAuth(username: "alice", password: "p\u{E4}$$w\u{F6}rd"))
        add("empty", "Empty", ProtoEmpty())
        add(
            "action_type", "ActionType",
            ActionType(type: "CancelFlightInfo", description: "Explicitly cancel a running FlightInfo."))
        add("criteria", "Criteria", Criteria(bytes([0x00, 0x01, 0x02], " where x > 1")))
        add("action", "Action", FlightAction(type: "RenewFlightEndpoint", body: pattern(40, 7, 3)[...]))
        add("result", "Result", FlightResult(bytes([], "result body", [0x00, 0xFF])))
        add("schema_result", "SchemaResult", SchemaResult(pattern(136, 5, 11)))
        add(
            "descriptor_path", "FlightDescriptor",
            FlightDescriptor(path: [
                "datasets", "2026", "donn\u{E9}es", "\u{65E5}\u{672C}\u{8A9E}", "\u{1F680} rocket", "",
            ]))
        add("descriptor_cmd", "FlightDescriptor", FlightDescriptor(cmd: bytes("SELECT * FROM t WHERE id = 42")))
        add("ticket", "Ticket", Ticket(bytes([], "ticket-", [0x00, 0x01, 0x02])))
        add("location", "Location", Location(uri: "grpc+tls://flight.example.com:8815"))
        add("flight_endpoint", "FlightEndpoint", endpoint1())
        add("flight_info_full", "FlightInfo", flightInfoFull())

        var poll = PollInfo()
        var polled = FlightInfo()
        polled.flightDescriptor = FlightDescriptor(cmd: bytes("q1"))
        polled.endpoints = [endpoint2()]
        polled.totalRecords = 10
        polled.totalBytes = 800
        poll.info = polled
        poll.flightDescriptor = FlightDescriptor(cmd: bytes("poll-q1"))
        poll.progress = 0.5
        poll.expirationTime = ProtoTimestamp(seconds: 1_767_225_600)
        add("poll_info", "PollInfo", poll)

        var cancel = CancelFlightInfoRequest()
        var cancelled = FlightInfo()
        cancelled.flightDescriptor = FlightDescriptor(path: ["x"])
        cancelled.endpoints = [endpoint1()]
        cancel.info = cancelled
        add("cancel_flight_info_request", "CancelFlightInfoRequest", cancel)
        add("cancel_flight_info_result", "CancelFlightInfoResult", CancelFlightInfoResult(status: 2))
        var renew = RenewFlightEndpointRequest()
        renew.endpoint = endpoint1()
        add("renew_flight_endpoint_request", "RenewFlightEndpointRequest", renew)
        add("flight_data_full", "FlightData", flightDataFull())
        var metadataOnly = FlightData()
        metadataOnly.appMetadata = bytes([0x01, 0x02, 0x03], " progress")
        add("flight_data_app_metadata_only", "FlightData", metadataOnly)
        add("put_result", "PutResult", PutResult(bytes("ack:42")))

        let set = "SetSessionOptionsRequest"
        add("session_string", set, options([("catalog", .string("main"))]))
        add("session_string_empty", set, options([("tag", .string(""))]))
        add("session_bool_true", set, options([("use_cache", .bool(true))]))
        add("session_bool_false", set, options([("strict", .bool(false))]))
        add("session_int64", set, options([("batch_size", .int64(1_048_576))]))
        add("session_int64_negative", set, options([("offset", .int64(-42))]))
        add("session_int64_min", set, options([("floor", .int64(.min))]))
        add("session_double", set, options([("ratio", .double(3.141592653589793))]))
        add("session_double_negative_zero", set, options([("nz", .double(-0.0))]))
        add("session_string_list", set, options([("schemas", .stringList(["public", "donn\u{E9}es", ""]))]))
        add("session_string_list_empty", set, options([("none", .stringList([]))]))
        add("session_unset_value", set, options([("unset", nil)]))
        add("session_empty_key", set, options([("", .string("x"))]))
        // Map entries in the reference's wire order (manifest.txt).
        add(
            "session_multi", set,
            options([
                ("catalog", .string("main")), ("offset", .int64(-42)), ("ratio", .double(0.25)),
                ("schemas", .stringList(["a", "b"])), ("use_cache", .bool(true)),
            ]))
        add(
            "get_session_options_result", "GetSessionOptionsResult",
            options([
                ("catalog", .string("main")), ("flags", .stringList(["x", "y", "z"])), ("timeout_ms", .int64(30000)),
            ]))
        add("set_session_options_result", "SetSessionOptionsResult", SetSessionOptionsResult(errors: [("bad_name", 1)]))
        add(
            "set_session_options_result_unspecified", "SetSessionOptionsResult",
            SetSessionOptionsResult(errors: [("x", 0)]))
        add(
            "set_session_options_result_multi", "SetSessionOptionsResult",
            SetSessionOptionsResult(errors: [("alpha", 2), ("beta", 3), ("gamma", 1)]))
        add("close_session_result", "CloseSessionResult", CloseSessionResult(status: 3))
        add("get_session_options_request", "GetSessionOptionsRequest", GetSessionOptionsRequest())
        add("close_session_request", "CloseSessionRequest", CloseSessionRequest())

        // Edge cases.
        add("default_flight_info", "FlightInfo", FlightInfo())
        add("default_flight_data", "FlightData", FlightData())
        add("default_flight_descriptor", "FlightDescriptor", FlightDescriptor())
        add("default_flight_endpoint", "FlightEndpoint", FlightEndpoint())
        add("default_poll_info", "PollInfo", PollInfo())
        add("default_handshake_request", "HandshakeRequest", HandshakeMessage())
        var unknownTotals = FlightInfo()
        unknownTotals.totalRecords = -1
        unknownTotals.totalBytes = -1
        add("flight_info_unknown_totals", "FlightInfo", unknownTotals)
        var extremeTotals = FlightInfo()
        extremeTotals.totalRecords = .max
        extremeTotals.totalBytes = .min
        add("flight_info_extreme_totals", "FlightInfo", extremeTotals)
        var unknownEnum = FlightDescriptor(path: ["p"])
        unknownEnum.type = FlightDescriptor.Kind(rawValue: 7)
        add("descriptor_unknown_enum", "FlightDescriptor", unknownEnum)
        var negativeEnum = FlightDescriptor(cmd: bytes("c"))
        negativeEnum.type = FlightDescriptor.Kind(rawValue: -1)
        add("descriptor_negative_enum", "FlightDescriptor", negativeEnum)
        add("cancel_flight_info_result_unknown_enum", "CancelFlightInfoResult", CancelFlightInfoResult(status: 99))
        var progressZero = PollInfo()
        progressZero.progress = 0.0
        add("poll_info_progress_zero", "PollInfo", progressZero)
        var emptyDescriptor = FlightData()
        emptyDescriptor.flightDescriptor = FlightDescriptor()
        emptyDescriptor.dataHeader = bytes("h")
        add("flight_data_empty_descriptor", "FlightData", emptyDescriptor)
        var preEpoch = FlightEndpoint()
        preEpoch.ticket = Ticket()
        preEpoch.expirationTime = ProtoTimestamp(seconds: -1, nanos: 999_999_999)
        add("flight_endpoint_empty_ticket_pre_epoch", "FlightEndpoint", preEpoch)
        var large = FlightData()
        large.dataHeader = pattern(72, 3, 5)[...]
        large.dataBody = pattern(1 << 20, 31, 7)[...]
        add("flight_data_large_body", "FlightData", large)
        add(
            "handshake_large_payload", "HandshakeRequest",
            HandshakeMessage(protocolVersion: 1, payload: pattern(20000, 11, 0)[...]))

        // Concatenated messages: singular sub-messages merge, repeated fields append, scalars: last wins.
        var mergedInfo = FlightInfo()
        mergedInfo.flightDescriptor = FlightDescriptor(path: ["warehouse", "orders"])
        mergedInfo.endpoints = [endpoint2(), endpoint1()]
        mergedInfo.totalRecords = 5
        mergedInfo.totalBytes = 9
        mergedInfo.appMetadata = bytes("m")
        merged("merge_flight_info", "FlightInfo", mergedInfo)
        var mergedData = FlightData()
        var mergedDescriptor = FlightDescriptor(cmd: bytes("c1"))
        mergedDescriptor.path = ["p"]
        mergedData.flightDescriptor = mergedDescriptor
        mergedData.dataHeader = bytes("h1")
        mergedData.appMetadata = bytes("m2")
        mergedData.dataBody = bytes("b1")
        merged("merge_flight_data", "FlightData", mergedData)
        var mergedPoll = PollInfo()
        mergedPoll.progress = 0.25
        mergedPoll.expirationTime = ProtoTimestamp(seconds: 10, nanos: 5)
        merged("merge_poll_info", "PollInfo", mergedPoll)
        // SessionOptions keeps entries in wire order, duplicates included (documented); folded last-wins they
        // must give the reference's map.
        let reference: [String: SessionOptionValue?] = ["k": .int64(1), "other": .bool(true)]
        merged("merge_session_options_duplicate_key", set, options([("k", .int64(1)), ("other", .bool(true))])) {
            decoded in
            var folded: [String: SessionOptionValue?] = [:]
            for (name, value) in decoded.options { folded[name] = .some(value) }
            return folded == reference
        }
        return cases
    }()

    /// Cases small enough to cut at every offset.
    static let truncatable: [FlightCase] = all.filter { (FlightFixtures.entry($0.name)?.size ?? 0) <= 32 * 1024 }
}

/// The address of the first byte of a slice (0 when empty), for storage-identity checks.
func address(of slice: ArraySlice<UInt8>) -> UInt {
    slice.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
}

/// Unknown fields of every wire type: 99 varint 150, 98 length-delimited "xyz", 97 fixed32, 96 fixed64,
/// 95 a group holding a varint, and the largest field number (2^29 - 1) as a varint.
let unknownFields: [[UInt8]] = [
    [0x98, 0x06, 0x96, 0x01],
    [0x92, 0x06, 0x03, 0x78, 0x79, 0x7A],
    [0x8D, 0x06, 0x01, 0x02, 0x03, 0x04],
    [0x81, 0x06, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
    [0xFB, 0x05, 0x08, 0x01, 0xFC, 0x05],
    [0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x2A],
]

// MARK: - Tests

@Suite struct FlightMessagesTests {
    @Test func caseTableMatchesManifest() throws {
        let manifest = FlightFixtures.entries
        #expect(manifest.count >= 50, "manifest.txt missing or short: \(manifest.count) cases")
        #expect(manifest.map(\.name) == FlightCases.all.map(\.name))
        for entry in manifest {
            guard let flightCase = FlightCases.all.first(where: { $0.name == entry.name }) else { continue }
            #expect(flightCase.message == entry.message, "\(entry.name)")
            let data = try FlightFixtures.load(entry.name)
            #expect(data.count == entry.size, "\(entry.name)")
            #expect((entry.fields.last?.end ?? 0) == entry.size, "\(entry.name)")
        }
    }

    /// (a) Our decoder reads the reference bytes to exactly the values generate.py set.
    @Test(arguments: FlightCases.all)
    func decodesReferenceBytes(_ flightCase: FlightCase) throws {
        let data = try FlightFixtures.load(flightCase.name)
        let decoded = try flightCase.decode(data[...])
        #expect(flightCase.matches(decoded), "decoded \(decoded)")
    }

    /// (b) Our encoder writes the reference bytes exactly.
    @Test(arguments: FlightCases.all.filter(\.encodes))
    func encodesReferenceBytes(_ flightCase: FlightCase) throws {
        let data = try FlightFixtures.load(flightCase.name)
        let produced = flightCase.expected.serializedBytes()
        let same = produced == data
        #expect(same, Comment(rawValue: describeDifference(produced, data)))
    }

    /// (c) Unknown fields of every wire type, before, between and after the known top-level fields, are skipped:
    /// the value is the one decoded without them (which `decodesReferenceBytes` compares with the reference).
    @Test(arguments: FlightCases.all)
    func skipsUnknownFields(_ flightCase: FlightCase) throws {
        let data = try FlightFixtures.load(flightCase.name)
        let plain = try flightCase.decode(data[...])
        let entry = try #require(FlightFixtures.entry(flightCase.name))
        let blob = unknownFields.flatMap { $0 }
        var boundaries = [0] + entry.fields.map(\.end)
        boundaries = Array(Set(boundaries)).sorted()
        // All unknown fields at every top-level boundary at once.
        var everywhere: [UInt8] = []
        var previous = 0
        for boundary in boundaries {
            everywhere += data[previous..<boundary]
            everywhere += blob
            previous = boundary
        }
        for variant in [blob + data, data + blob, everywhere] {
            let decoded = try flightCase.decode(variant[...])
            #expect(messagesEqual(decoded, plain))
        }
        // Each unknown field alone, after the first top-level field.
        let cut = entry.fields.first?.end ?? 0
        for field in unknownFields {
            let variant = Array(data[..<cut]) + field + Array(data[cut...])
            let decoded = try flightCase.decode(variant[...])
            #expect(messagesEqual(decoded, plain), "unknown field \(field)")
        }
    }

    /// A cut exactly at a top-level field boundary is itself a valid message (the fields before the cut);
    /// any other cut throws: `.truncated` inside a tag, a varint, a fixed value or a length prefix,
    /// `.lengthOutOfRange` inside a length-delimited payload (nested messages are never reached).
    @Test(arguments: FlightCases.truncatable)
    func truncationAtEveryOffset(_ flightCase: FlightCase) throws {
        let data = try FlightFixtures.load(flightCase.name)
        let entry = try #require(FlightFixtures.entry(flightCase.name))
        let encodesExactly = flightCase.encodes && flightCase.expected.serializedBytes() == data
        let boundaries = Set([0] + entry.fields.map(\.end))
        for cut in 0..<data.count {
            let prefix = data[0..<cut]
            if boundaries.contains(cut) {
                do {
                    let decoded = try flightCase.decode(prefix)
                    if encodesExactly {
                        // Re-encoding the partial message gives the prefix back (the fixture is canonical).
                        #expect(decoded.serializedBytes() == Array(prefix), "cut at \(cut)")
                    }
                } catch {
                    Issue.record("cut at boundary \(cut) threw \(error)")
                }
                continue
            }
            let field = try #require(entry.fields.first { $0.start < cut && cut < $0.end })
            let expected = Self.truncationError(field: field, cut: cut)
            do {
                let decoded = try flightCase.decode(prefix)
                Issue.record("cut at \(cut) decoded to \(decoded), expected \(expected)")
            } catch {
                #expect(error == expected, "cut at \(cut)")
            }
        }
    }

    /// The error a top-level cut inside `field` must raise, per the reader's contract.
    static func truncationError(field: FlightFixtures.TopField, cut: Int) -> FlightProtoError {
        if cut < field.valueStart {
            return .truncated(
                field: "tag", offset: field.start, needed: cut - field.start + 1, available: cut - field.start)
        }
        let name = "field \(field.number)"
        let inValue = cut - field.valueStart
        switch field.wireType {
        case 1: return .truncated(field: name, offset: field.valueStart, needed: 8, available: inValue)
        case 5: return .truncated(field: name, offset: field.valueStart, needed: 4, available: inValue)
        case 2 where cut >= field.payloadStart:
            return .lengthOutOfRange(
                offset: field.valueStart, length: UInt64(field.end - field.payloadStart),
                available: cut - field.payloadStart)
        default:  // inside a varint value or a length prefix
            return .truncated(field: name, offset: field.valueStart, needed: inValue + 1, available: inValue)
        }
    }

    // MARK: Wrong wire types, lengths past the end, other malformed input

    static let wrongWireTypes: [(String, [UInt8], FlightProtoError)] = [
        (
            "FlightInfo.total_records as length-delimited", [0x22, 0x01, 0x41],
            .wireTypeMismatch(field: 4, offset: 0, expected: .varint, found: .lengthDelimited)
        ),
        (
            "FlightInfo.ordered as fixed64", [0x31, 1, 0, 0, 0, 0, 0, 0, 0],
            .wireTypeMismatch(field: 6, offset: 0, expected: .varint, found: .fixed64)
        ),
        (
            "FlightData.data_body as varint", [0x0A, 0x00, 0xC0, 0x3E, 0x05],
            .wireTypeMismatch(field: 1000, offset: 2, expected: .lengthDelimited, found: .varint)
        ),
        (
            "FlightDescriptor.path as fixed32", [0x08, 0x01, 0x1D, 0x00, 0x00, 0x00, 0x00],
            .wireTypeMismatch(field: 3, offset: 2, expected: .lengthDelimited, found: .fixed32)
        ),
        (
            "PollInfo.progress as varint", [0x18, 0x00],
            .wireTypeMismatch(field: 3, offset: 0, expected: .fixed64, found: .varint)
        ),
        (
            "FlightEndpoint.location as varint", [0x10, 0x01],
            .wireTypeMismatch(field: 2, offset: 0, expected: .lengthDelimited, found: .varint)
        ),
        (
            "HandshakeRequest.protocol_version as fixed32", [0x0D, 0x01, 0x00, 0x00, 0x00],
            .wireTypeMismatch(field: 1, offset: 0, expected: .varint, found: .fixed32)
        ),
        (
            "CloseSessionResult.status as length-delimited", [0x0A, 0x00],
            .wireTypeMismatch(field: 1, offset: 0, expected: .varint, found: .lengthDelimited)
        ),
    ]

    static func decodeAs(_ label: String, _ input: [UInt8]) throws(FlightProtoError) {
        switch label.prefix(while: { $0 != "." }) {
        case "FlightInfo": _ = try FlightInfo(serializedBytes: input)
        case "FlightData": _ = try FlightData(serializedBytes: input)
        case "FlightDescriptor": _ = try FlightDescriptor(serializedBytes: input)
        case "PollInfo": _ = try PollInfo(serializedBytes: input)
        case "FlightEndpoint": _ = try FlightEndpoint(serializedBytes: input)
        case "HandshakeRequest": _ = try HandshakeMessage(serializedBytes: input)
        case "CloseSessionResult": _ = try CloseSessionResult(serializedBytes: input)
        case "SetSessionOptionsRequest": _ = try SetSessionOptionsRequest(serializedBytes: input)
        case "Location": _ = try Location(serializedBytes: input)
        default: Issue.record("no decoder for \(label)")
        }
    }

    /// The reference parser (upb) keeps a known field with the wrong wire type as an unknown field; our codec
    /// rejects it, by design.
    @Test(arguments: Self.wrongWireTypes.indices)
    func wrongWireTypeThrows(_ index: Int) {
        let (label, input, expected) = Self.wrongWireTypes[index]
        #expect(throws: expected, "\(label)") { try Self.decodeAs(label, input) }
    }

    @Test func wrongWireTypeInsideNestedMessageThrows() throws {
        // SetSessionOptionsRequest { "k": SessionOptionValue { int64_value (sfixed64) sent as varint 5 } }
        let input: [UInt8] = [0x0A, 0x07, 0x0A, 0x01, 0x6B, 0x12, 0x02, 0x18, 0x05]
        do {
            _ = try SetSessionOptionsRequest(serializedBytes: input)
            Issue.record("decoded")
        } catch {
            guard case .wireTypeMismatch(field: 3, _, expected: .fixed64, found: .varint) = error else {
                Issue.record("unexpected \(error)")
                return
            }
        }
    }

    /// FlightProtoError documents offsets as relative to the start of the decoded (outermost) message.
    @Test func nestedErrorOffsetsAreRelativeToTheOuterMessage() {
        // The sfixed64 tag of the SessionOptionValue is at byte 7 of the request.
        let wireType: [UInt8] = [0x0A, 0x07, 0x0A, 0x01, 0x6B, 0x12, 0x02, 0x18, 0x05]
        #expect(throws: FlightProtoError.wireTypeMismatch(field: 3, offset: 7, expected: .fixed64, found: .varint)) {
            _ = try SetSessionOptionsRequest(serializedBytes: wireType)
        }
        // FlightInfo { flight_descriptor { path: length 5 with 1 byte } }: the path length is at byte 3.
        let length: [UInt8] = [0x12, 0x03, 0x1A, 0x05, 0x61]
        #expect(throws: FlightProtoError.lengthOutOfRange(offset: 3, length: 5, available: 1)) {
            _ = try FlightInfo(serializedBytes: length)
        }
    }

    @Test func lengthPastTheEndThrows() throws {
        // data_body claims 1 MiB, 300 bytes follow.
        let body: [UInt8] = [0xC2, 0x3E, 0x80, 0x80, 0x40] + pattern(300, 7, 1)
        #expect(throws: FlightProtoError.lengthOutOfRange(offset: 2, length: 1 << 20, available: 300)) {
            _ = try FlightData(serializedBytes: body)
        }
        // Lengths of 2^63 - 1 and 2^64 - 1 (no overflow, no trap).
        let huge: [UInt8] = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
        #expect(throws: FlightProtoError.lengthOutOfRange(offset: 1, length: UInt64(Int64.max), available: 0)) {
            _ = try FlightInfo(serializedBytes: huge)
        }
        let maxLength: [UInt8] = [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00]
        #expect(throws: FlightProtoError.lengthOutOfRange(offset: 1, length: .max, available: 1)) {
            _ = try FlightInfo(serializedBytes: maxLength)
        }
        // The same inside a nested message (offset checked by nestedErrorOffsetsAreRelativeToTheOuterMessage).
        do {
            _ = try FlightInfo(serializedBytes: [0x12, 0x03, 0x1A, 0x05, 0x61])
            Issue.record("decoded")
        } catch {
            guard case .lengthOutOfRange(_, length: 5, available: 1) = error else {
                Issue.record("unexpected \(error)")
                return
            }
        }
        // An unknown length-delimited field past the end.
        #expect(throws: FlightProtoError.lengthOutOfRange(offset: 2, length: 4, available: 2)) {
            _ = try FlightData(serializedBytes: [0x92, 0x06, 0x04, 0x01, 0x02])
        }
    }

    @Test func otherMalformedInputThrows() {
        // Wire type 6 and 7.
        #expect(throws: FlightProtoError.invalidWireType(offset: 0, found: 6)) {
            _ = try FlightInfo(serializedBytes: [0x0E])
        }
        #expect(throws: FlightProtoError.invalidWireType(offset: 2, found: 7)) {
            _ = try FlightData(serializedBytes: [0x1A, 0x00, 0x0F])
        }
        // Field number 0.
        #expect(throws: FlightProtoError.invalidFieldNumber(offset: 0, found: 0)) {
            _ = try Ticket(serializedBytes: [0x02, 0x00])
        }
        // An 11-byte varint.
        #expect(throws: FlightProtoError.malformedVarint(offset: 1)) {
            _ = try FlightInfo(serializedBytes: [0x20] + [UInt8](repeating: 0xFF, count: 10) + [0x01])
        }
        // A stray end-group.
        #expect(throws: FlightProtoError.invalidWireType(offset: 0, found: 4)) {
            _ = try FlightInfo(serializedBytes: [0x64])
        }
        // A group that never ends.
        #expect(throws: FlightProtoError.self) {
            _ = try FlightData(serializedBytes: [0xFB, 0x05, 0x08, 0x01])
        }
        // Invalid UTF-8 in a string field.
        #expect(throws: FlightProtoError.invalidUTF8(field: 1, offset: 1)) {
            _ = try Location(serializedBytes: [0x0A, 0x02, 0xC3, 0x28])
        }
    }

    // MARK: Zero copy

    @Test func encodedPartsEqualReferenceAndKeepBodyStorage() throws {
        let reference = try FlightFixtures.load("flight_data_full")
        let body = pattern(300, 7, 1)
        let slices = [body[0..<8], body[8..<8], body[8..<200], body[200..<300]]
        let parts = FlightData.encodedParts(
            descriptor: FlightDescriptor(path: ["upload", "t1"]), dataHeader: pattern(104, 17, 9),
            appMetadata: Array("batch-0".utf8), body: slices, bodyLength: 300)
        #expect(parts.flatMap { $0 } == reference)
        let nonEmpty = slices.filter { !$0.isEmpty }
        try #require(parts.count == 1 + nonEmpty.count)
        for (part, slice) in zip(parts.dropFirst(), nonEmpty) {
            #expect(address(of: part) == address(of: slice))
            #expect(part.startIndex == slice.startIndex && part.endIndex == slice.endIndex)
        }
        // The prefix part is the reference up to the body.
        let entry = try #require(FlightFixtures.entry("flight_data_full"))
        let bodyField = try #require(entry.fields.first { $0.number == 1000 })
        #expect(Array(parts[0]) == Array(reference[..<bodyField.payloadStart]))
    }

    @Test func encodedPartsLargeBody() throws {
        let reference = try FlightFixtures.load("flight_data_large_body")
        let body = pattern(1 << 20, 31, 7)
        let chunk = 64 * 1024
        let slices = stride(from: 0, to: body.count, by: chunk).map { body[$0..<min($0 + chunk, body.count)] }
        let parts = FlightData.encodedParts(dataHeader: pattern(72, 3, 5), body: slices, bodyLength: body.count)
        let same = parts.flatMap { $0 } == reference
        #expect(same)
        try #require(parts.count == 1 + slices.count)
        for (part, slice) in zip(parts.dropFirst(), slices) {
            #expect(address(of: part) == address(of: slice))
        }
        #expect(parts[0].count == reference.count - body.count)
    }

    @Test func encodedPartsWithoutBody() throws {
        let reference = try FlightFixtures.load("flight_data_app_metadata_only")
        let parts = FlightData.encodedParts(
            dataHeader: [UInt8](), appMetadata: [0x01, 0x02, 0x03] + Array(" progress".utf8), body: [], bodyLength: 0)
        #expect(parts.count == 1)
        #expect(parts.flatMap { $0 } == reference)
        let empty = FlightData.encodedParts(dataHeader: [UInt8](), body: [], bodyLength: 0)
        #expect(empty.flatMap { $0 }.isEmpty)
    }

    /// Decoded bytes fields are slices of the input buffer, also when the input slice does not start at 0.
    @Test(arguments: [0, 5])
    func decodedFlightDataSlicesTheInput(_ lead: Int) throws {
        let reference = try FlightFixtures.load("flight_data_full")
        let entry = try #require(FlightFixtures.entry("flight_data_full"))
        let buffer = [UInt8](repeating: 0xEE, count: lead) + reference + [0xEE, 0xEE]
        let input = buffer[lead..<(lead + reference.count)]
        let decoded = try FlightData(serializedBytes: input)
        let base = buffer.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        for (number, slice) in [(2, decoded.dataHeader), (3, decoded.appMetadata), (1000, decoded.dataBody)] {
            let field = try #require(entry.fields.first { $0.number == number })
            #expect(address(of: slice) == base + UInt(lead + field.payloadStart), "field \(number)")
            #expect(slice.startIndex == lead + field.payloadStart, "field \(number)")
            #expect(slice.count == field.end - field.payloadStart, "field \(number)")
        }
        #expect(decoded == FlightCases.flightDataFull())
    }

    @Test func decodedNestedBytesSliceTheInput() throws {
        let reference = try FlightFixtures.load("flight_info_full")
        let decoded = try FlightInfo(serializedBytes: reference)
        let range = reference.withUnsafeBufferPointer {
            UInt(bitPattern: $0.baseAddress)..<(UInt(bitPattern: $0.baseAddress) + UInt($0.count))
        }
        let ticket = try #require(decoded.endpoints.first?.ticket?.value)
        for slice in [decoded.schema, decoded.appMetadata, ticket, decoded.endpoints[0].appMetadata] {
            #expect(range.contains(address(of: slice)))
            #expect(range.contains(address(of: slice) + UInt(slice.count) - 1))
        }
        #expect(Array(reference[decoded.schema.indices]) == pattern(200, 13, 255))
        #expect(Array(reference[ticket.indices]) == Array("tkt-1".utf8))
    }

    @Test func decodedLargeBodyIsNotCopied() throws {
        let reference = try FlightFixtures.load("flight_data_large_body")
        let decoded = try FlightData(serializedBytes: reference)
        let base = reference.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(decoded.dataBody.count == 1 << 20)
        #expect(address(of: decoded.dataBody) == base + UInt(reference.count - (1 << 20)))
    }
}
