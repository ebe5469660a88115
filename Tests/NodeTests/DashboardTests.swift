import Foundation
import Node
import Testing

/// The dashboard in a real browser: Debian's chromium, headless, renders `GET /` of a running pipeline with a
/// failed batch; its DOM (after the page's scripts fetched the JSON API) holds the queue names, the failure's
/// `last_error` and, for `#batch=KEY`, the batch's detail with its first rows.
@Suite(.serialized) struct DashboardTests {
    /// `chromium` from PATH or Debian's path (scripts/bootstrap installs it).
    static var chromium: String? {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/chromium" }
            + ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func dumpDOM(_ url: String) async throws -> String {
        let binary = try #require(Self.chromium, "chromium is not installed: run scripts/bootstrap (apt-get install chromium)")
        let profile = NSTemporaryDirectory() + "vf-chromium-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let child = try TestChildProcess(URL(fileURLWithPath: binary), [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile)",
            "--virtual-time-budget=5000", "--dump-dom", url,
        ])
        child.closeInput()
        defer { child.terminate() }
        guard await child.waitForExit(within: 90) else {
            throw FlightTestError("chromium did not finish within 90 s; stderr:\n\(child.stderr.suffix(2000))")
        }
        return child.stdout
    }

    @Test func chromiumRendersQueuesFailuresAndABatchsRows() async throws {
        try await withScript(OperationsTests.failing) { failing in
            try await withPrivateValkey { valkey in
                let configuration = OperationsTests.pipeline(valkey.url, queues: ["dash-broken"]) {
                    $0.processor = .exec(command: failing, persistent: false)
                }
                try await InProcessNode.with(configuration) { node in
                    let failed = try #require(try await node.submit(try PipelineData.stream(rows: 6), queue: "dash-broken")["key"].string)
                    #expect(try await node.waitFinished(failed)["status"] == "failed")
                    let parked = try #require(try await node.submit(try PipelineData.stream(rows: 3, offset: 100), queue: "dash-parked")["key"].string)
                    let base = HTTPProbe.base(node.location)

                    let dom = try await Self.dumpDOM(base + "/")
                    #expect(dom.contains(">dash-broken<"), "\(dom.prefix(3000))")
                    #expect(dom.contains(">dash-parked<"))
                    #expect(dom.contains("boom: the disk is on fire"))
                    #expect(dom.contains(">\(failed)<"))
                    #expect(dom.contains("class=\"dot ok\""), "readiness dot")

                    // A batch's detail: status, schema and its first rows (price = id × 0.5 + 100).
                    let detail = try await Self.dumpDOM(base + "/#batch=" + parked)
                    #expect(detail.contains(">pending<"))
                    #expect(detail.contains("Cancel"))
                    #expect(detail.contains(">101<"), "\(detail.suffix(3000))")
                    #expect(detail.contains("first 3 of 3 rows"))
                }
            }
        }
    }
}
