import ArrowIPC
import Foundation
import TestProcessSupport

/// Paths and helpers shared by the ArrowIPC tests.
enum TestSupport {
    /// The package root, derived from this file's location.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// Apache Arrow's own test files, vendored under Tests/Fixtures/arrow-testing (see its README.md).
    static let arrowTesting = packageRoot.appendingPathComponent("Tests/Fixtures/arrow-testing/data")

    /// Our pyarrow-generated fixtures and the Python helpers beside them.
    static let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures/ArrowIPC")

    /// The Python of the project venv (VALKEYFLIGHT_PYTHON, else .venv/bin/python).
    static var python: String {
        ProcessInfo.processInfo.environment["VALKEYFLIGHT_PYTHON"]
            ?? packageRoot.appendingPathComponent(".venv/bin/python").path
    }

    static func read(_ url: URL) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url))
    }

    static func files(in directory: URL, suffixes: [String], prefix: String = "") -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted()
            .filter { name in name.hasPrefix(prefix) && suffixes.contains { name.hasSuffix($0) } }
            .map { directory.appendingPathComponent($0) }
    }

    /// Reads every batch of a stream or file with our reader.
    static func readAll(_ bytes: [UInt8], options: IPCReadOptions = .untrusted) throws -> (Schema, [RecordBatch]) {
        switch IPCFormat.detect(bytes) {
        case .stream:
            var reader = try IPCStreamReader(bytes, options: options)
            return (reader.schema, try reader.readAll())
        case .file:
            let reader = try IPCFileReader(bytes, options: options)
            return (reader.schema, try reader.readAll())
        }
    }

    /// Re-encodes batches with our writer.
    static func write(_ schema: Schema, _ batches: [RecordBatch], format: IPCFormat) throws -> [UInt8] {
        var writer = IPCWriter(schema: schema, format: format)
        for batch in batches { try writer.write(batch) }
        writer.finish()
        return writer.bytes()
    }

    /// Runs a Python script of Tests/Fixtures/ArrowIPC with arguments; returns (exit status, stdout, stderr).
    @discardableResult
    static func runPython(_ script: String, _ arguments: [String], stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
        try self.runPythonArguments([self.fixtures.appendingPathComponent(script).path] + arguments, stdin: stdin)
    }

    /// Runs `python -c code arguments…`.
    @discardableResult
    static func runPythonCode(_ code: String, _ arguments: [String] = [], stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
        try self.runPythonArguments(["-c", code] + arguments, stdin: stdin)
    }

    private static func runPythonArguments(_ arguments: [String], stdin: [UInt8]?) throws -> (Int32, String, String) {
        let result = try SpawnedProcess.runBlocking(
            ChildCommand(self.python, arguments), stdin: stdin ?? [], timeout: .seconds(600))
        return (result.status, result.stdoutText, result.stderrText)
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vf-arrowipc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
