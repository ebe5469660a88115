@testable import Node
import Testing

@Suite struct JSONValueTests {
    @Test func parsesObjectsArraysAndScalars() throws {
        let value = try #require(JSONValue.parse(#" {"key":"q/1","rows":12,"ok":true,"none":null,"list":[1,"a",{}]} "#))
        #expect(value["key"]?.text == "q/1")
        #expect(value["rows"] == .number("12"))
        #expect(value["ok"]?.text == "true")
        #expect(value["none"] == .null)
        #expect(value["list"] == .array([.number("1"), .string("a"), .object([])]))
    }

    @Test(arguments: [
        (#""a\nb\u00e9""#, "a\nbé"),
        (#""\ud83d\ude00""#, "😀"),
        (#""x\ud83dy""#, "x\u{FFFD}y"),
        (#""\ud83d""#, "\u{FFFD}"),
        (#""\ud83d\n""#, "\u{FFFD}\n"),
        (#""\ud83d\ud83d\ude00""#, "\u{FFFD}😀"),
    ])
    func decodesEscapesAndBrokenSurrogates(json: String, expected: String) {
        #expect(JSONValue.parse(json) == .string(expected))
    }

    @Test(arguments: ["", "{", "[1,", #"{"a" 1}"#, #""abc"#, "tru", "1 2", String(repeating: "[", count: 100) + String(repeating: "]", count: 100)])
    func rejectsMalformedJSON(json: String) {
        #expect(JSONValue.parse(json) == nil)
    }
}
