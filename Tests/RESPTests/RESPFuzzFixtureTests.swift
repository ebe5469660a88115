import Foundation
import RESP
import Testing

/// Replays the fuzzer's seed corpus and every saved crash input (Tests/Fixtures/RESP/fuzz).
@Suite struct RESPFuzzFixtureTests {
    static let fuzzDirectory = packageRoot.appendingPathComponent("Tests/Fixtures/RESP/fuzz")

    static func files(_ folder: String) -> [URL] {
        let directory = fuzzDirectory.appendingPathComponent(folder)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    @Test func everySeedParsesCompletelyAndRoundTrips() throws {
        let seeds = Self.files("corpus")
        #expect(seeds.count >= 18)
        for seed in seeds {
            let bytes = [UInt8](try Data(contentsOf: seed))
            let parsed = try RESPParser().parse(bytes)
            #expect(parsed?.length == bytes.count, "\(seed.lastPathComponent)")
            let value = try #require(parsed?.value, "\(seed.lastPathComponent) did not parse")
            #expect(try RESPParser().parse(value.encoded)?.value == value, "\(seed.lastPathComponent)")
        }
    }

    /// The limits the fuzz harness parses with (RESPParserFuzz.swift).
    static let fuzzLimits = RESPParser.Limits(maxBulkLength: 1 << 20, maxElements: 1 << 16, maxDepth: 32, maxLineLength: 1 << 16)

    @Test func savedCrashInputsNoLongerTrap() throws {
        // Crash inputs scripts/fuzz-resp saved, and inputs of fuzz runs that reach the parser's limit and error
        // paths (see the folder's README). An empty folder means the fixtures are missing: fail, do not pass.
        let inputs = Self.files("regressions")
        try #require(inputs.count >= 4, "Tests/Fixtures/RESP/fuzz/regressions holds \(inputs.count) inputs")
        var outcomes: [String: Int] = [:]
        for input in inputs {
            let bytes = [UInt8](try Data(contentsOf: input))
            let name = input.lastPathComponent
            // The harness's checks: nil, a RESPError, or a value of at most the input's length that re-encodes to
            // bytes parsing back to the same value. Inputs named after what they reach must still reach it
            // (crash-* files, named by libFuzzer, only must not trap).
            var outcome = ""
            do throws(RESPError) {
                if let (value, length) = try RESPParser(limits: Self.fuzzLimits).parse(bytes) {
                    outcome = "value"
                    #expect(length > 0 && length <= bytes.count, "\(name): \(length) of \(bytes.count) bytes")
                    let again = try RESPParser(limits: Self.fuzzLimits).parse(value.encoded)
                    #expect(again?.length == value.encoded.count, "\(name)")
                } else {
                    outcome = "incomplete"
                }
            } catch {
                #expect(!error.description.isEmpty, "\(name)")
                if case .limitExceeded = error { outcome = "limit" } else { outcome = "malformed" }
            }
            outcomes[outcome, default: 0] += 1
            let expected =
                name.hasPrefix("limit-") ? "limit"
                : name == "largest-value" ? "value" : name == "largest-incomplete" ? "incomplete"
                : name.hasPrefix("crash-") ? outcome : "malformed"
            #expect(outcome == expected, "\(name): \(outcome), expected \(expected)")
        }
        // The saved inputs cover rejection, not only well-formed replies.
        #expect(outcomes["limit", default: 0] > 0 && outcomes["malformed", default: 0] > 0, "\(outcomes)")
    }
}
