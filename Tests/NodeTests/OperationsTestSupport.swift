import Foundation
import Node
import Testing

/// HTTP requests to a node through `Tests/Fixtures/HTTP1/http_probe.py`: Python's urllib, Prometheus' own text
/// parser (prometheus_client) and raw sockets — real clients, from outside the process.
enum HTTPProbe {
    static let script = PyArrow.fixtures.appendingPathComponent("HTTP1/http_probe.py")

    struct Response: Sendable {
        var status: Int
        var headers: PyJSON
        var body: String
        var json: PyJSON { (try? PyJSON.lastLine(of: self.body)) ?? .null }
    }

    static func run(_ arguments: [String], timeout: Double = 60) async throws -> PyJSON {
        let child = try TestChildProcess(PyArrow.python, [self.script.path] + arguments,
                                         environment: ["PYTHONDONTWRITEBYTECODE": "1"])
        child.closeInput()
        defer { child.terminate() }
        guard await child.waitForExit(within: timeout) else {
            throw FlightTestError("http_probe.py \(arguments.first ?? "") did not finish within \(timeout) s")
        }
        let result = try PyJSON.lastLine(of: child.stdout)
        if let error = result["error"].string { throw FlightTestError("http_probe.py \(arguments): \(error); stderr: \(child.stderr)") }
        return result
    }

    static func get(_ url: String, method: String = "GET", headers: [String] = [], data: String? = nil,
                    cafile: String? = nil) async throws -> Response
    {
        var arguments = ["get", url, "--method", method]
        if let cafile { arguments += ["--cafile", cafile] }
        for header in headers { arguments += ["--header", header] }
        if let data { arguments += ["--data", data] }
        let result = try await self.run(arguments)
        return Response(status: result["status"].int ?? 0, headers: result["headers"], body: result["body"].string ?? "")
    }

    /// The metric families of `url` as prometheus_client parsed them: name → {"type", "samples"}.
    static func metrics(_ url: String, headers: [String] = []) async throws -> MetricFamilies {
        var arguments = ["metrics", url]
        for header in headers { arguments += ["--header", header] }
        let result = try await self.run(arguments)
        return MetricFamilies(families: result["families"], contentType: result["content_type"].string ?? "")
    }

    /// Sends `bytes` on a new connection and reads until the server closes it (or `readSeconds` pass).
    static func raw(port: Int, _ bytes: [UInt8], readSeconds: Double = 20) async throws -> (response: String, closed: Bool) {
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let result = try await self.run(["raw", "127.0.0.1", String(port), hex, "--read-seconds", String(readSeconds)])
        return (result["response"].string ?? "", result["closed"] == .bool(true))
    }

    /// `http://HOST:PORT` of a `grpc://HOST:PORT` location.
    static func base(_ location: String) -> String {
        "http://" + location.replacingOccurrences(of: "grpc://", with: "")
    }

    static func port(_ location: String) -> Int { Int(location.split(separator: ":").last ?? "") ?? 0 }
}

/// Parsed Prometheus metric families.
struct MetricFamilies: Sendable {
    let families: PyJSON
    let contentType: String

    func type(_ family: String) -> String? { self.families[family]["type"].string }

    /// The value of sample `name` (default: the family name) whose labels are exactly `labels`.
    func value(_ family: String, _ name: String? = nil, _ labels: [String: String] = [:]) -> Double? {
        for sample in self.families[family]["samples"].array {
            guard sample[0].string == (name ?? family) else { continue }
            let sampleLabels = sample[1].object.compactMapValues(\.string)
            if sampleLabels == labels { return sample[2].double }
        }
        return nil
    }

    /// Every label set of `family`'s samples named `name`.
    func labelSets(_ family: String, _ name: String? = nil) -> [[String: String]] {
        self.families[family]["samples"].array.filter { $0[0].string == (name ?? family) }
            .map { $0[1].object.compactMapValues(\.string) }
    }
}

/// Polls `condition` every 20–200 ms until it holds or `timeout` passes; returns whether it held.
func pollUntil(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    var pause = Duration.milliseconds(20)
    while true {
        if try await condition() { return true }
        if ContinuousClock.now + pause > deadline { return false }
        try? await Task.sleep(for: pause)
        pause = min(pause * 2, .milliseconds(200))
    }
}
