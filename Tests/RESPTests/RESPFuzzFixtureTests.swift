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
            if let value = parsed?.value { #expect(try RESPParser().parse(value.encoded)?.value == value) }
        }
    }

    @Test func savedCrashInputsNoLongerTrap() throws {
        for input in Self.files("regressions") {
            let bytes = [UInt8](try Data(contentsOf: input))
            // Any outcome but a trap is acceptable: nil, a value, or a RESPError.
            _ = try? RESPParser().parse(bytes)
        }
    }
}
