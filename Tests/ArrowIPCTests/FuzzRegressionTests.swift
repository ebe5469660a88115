import ArrowIPC
import Foundation
import Testing

/// Replays every input of Tests/Fixtures/ArrowIPC/fuzz-regressions (crashes found by scripts/fuzz-arrowipc and
/// scripts/fuzz-flight-doput, and the hand-built inputs that crashed or fooled earlier versions): each must be
/// rejected with exactly the error its line in EXPECTED names. `doput-*` inputs are FlightData sequences; NodeTests'
/// HardeningDoPutTests replays those through the DoPut path.
@Suite struct FuzzRegressionTests {
    static let directory = TestSupport.fixtures.appendingPathComponent("fuzz-regressions")

    /// EXPECTED: one `file<TAB>error description` line per input.
    static func expected() throws -> [String: String] {
        let text = try String(contentsOf: Self.directory.appendingPathComponent("EXPECTED"), encoding: .utf8)
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.isEmpty {
            let parts = line.split(separator: "\t", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }

    static var inputs: [URL] {
        TestSupport.files(in: Self.directory, suffixes: [""]).filter { !["README.md", "EXPECTED"].contains($0.lastPathComponent) }
    }

    @Test func everyRegressionInputIsRejectedWithItsError() throws {
        let inputs = Self.inputs
        #expect(inputs.count >= 6, "regression inputs missing: \(inputs.map(\.lastPathComponent))")
        let expected = try Self.expected()
        #expect(Set(expected.keys) == Set(inputs.map(\.lastPathComponent)), "EXPECTED and the folder disagree")
        for input in inputs where !input.lastPathComponent.hasPrefix("doput-") {
            let name = input.lastPathComponent
            let bytes = try TestSupport.read(input)
            var found = "accepted"
            do { _ = try TestSupport.readAll(bytes) } catch let error as ArrowIPCError { found = error.description }
            #expect(found == expected[name], "\(name)")
            // Structural reading alone and the other container format must cope too.
            _ = try? TestSupport.readAll(bytes, options: .default)
            _ = try? IPCFileReader(bytes, options: .untrusted).readAll()
        }
    }
}
