import Foundation
import Node
import Testing

/// The CLI rough edges a new user hit (issue 12, item 6), each through the binary as users run it.
@Suite struct CLIRoughEdgesTests {
    static func temporaryFile(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "vf-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A real Parquet, Feather v1 and CSV file from pyarrow, plus an empty file and a gzip'd stream: each is named
    /// for what it is, by `ipc inspect` and by `submit` (which then sends nothing: the server does not exist).
    @Test func inputsThatAreNotArrowIPCSayWhatTheyAre() async throws {
        let directory = NSTemporaryDirectory() + "vf-cli-inputs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try await ProcessorSupport.runPython("""
            import sys, gzip, json, pyarrow as pa, pyarrow.parquet as pq, pyarrow.feather as feather, pyarrow.csv as csv
            d = sys.argv[1]
            t = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
            pq.write_table(t, d + "/t.parquet")
            feather.write_feather(t, d + "/t.feather1", version=1)
            csv.write_csv(t, d + "/t.csv")
            sink = pa.BufferOutputStream()
            w = pa.ipc.new_stream(sink, t.schema); w.write_table(t); w.close()
            open(d + "/t.arrows.gz", "wb").write(gzip.compress(sink.getvalue().to_pybytes()))
            open(d + "/empty.arrows", "wb").close()
            print(json.dumps({"ok": True}))
            """, [directory])
        let cases: [(String, String)] = [
            ("t.parquet", "is a Parquet file (it starts with PAR1)"),
            ("t.feather1", "is a Feather v1 file"),
            ("t.csv", "looks like CSV text"),
            ("t.arrows.gz", "is compressed with gzip; decompress it first"),
            ("empty.arrows", "is empty"),
        ]
        for (name, expected) in cases {
            let path = directory + "/" + name
            let inspect = try await CLI.run(["ipc", "inspect", path])
            #expect(inspect.status == 1, "\(name): \(inspect.stderr)")
            #expect(inspect.stderr.hasPrefix("valkeyflight: error: \(path) is not Arrow IPC: it \(expected)"),
                    "\(name): \(inspect.stderr)")
            // No server listens on port 1: the input is refused before anything is sent.
            let submit = try await CLI.run(["submit", "--server", "grpc://127.0.0.1:1", path])
            #expect(submit.status == 1)
            #expect(submit.stderr.contains("is not Arrow IPC: it \(expected)"), "\(name): \(submit.stderr)")
            #expect(!submit.stderr.contains("UNAVAILABLE"), "\(name) was sent: \(submit.stderr)")
        }
        // A real stream still passes the check.
        let good = try Self.temporaryFile("good.arrows", try PipelineData.stream(rows: 3))
        defer { unlink(good) }
        #expect(try await CLI.run(["ipc", "inspect", good]).status == 0)
    }

    /// Under `--json` (or VALKEYFLIGHT_JSON) an error is one JSON object on stderr, with the same exit code.
    @Test func errorsAreJSONUnderJSON() async throws {
        let plain = try await CLI.run(["status", "--server", "grpc://127.0.0.1:1", "q/x"])
        #expect(plain.status == 1)
        #expect(plain.stderr.hasPrefix("valkeyflight: error: status q/x: UNAVAILABLE"), "\(plain.stderr)")
        for (arguments, environment) in [
            (["status", "--json", "--server", "grpc://127.0.0.1:1", "q/x"], [String: String]()),
            (["status", "--server", "grpc://127.0.0.1:1", "q/x"], ["VALKEYFLIGHT_JSON": "true"]),
        ] {
            let result = try await CLI.run(arguments, environment: environment)
            #expect(result.status == 1)
            let object = try JSONSerialization.jsonObject(with: Data(result.stderr.utf8)) as? [String: String]
            #expect(object?["error"]?.hasPrefix("status q/x: UNAVAILABLE") == true, "\(result.stderr)")
        }
        // A usage error keeps its own exit code (64) as JSON too.
        let usage = try await CLI.run(["status", "--json", "--no-such-flag"])
        #expect(usage.status == 64)
        #expect(usage.stderr.hasPrefix("{\"error\":"), "\(usage.stderr)")
        // get --json with the data on standard output cannot print JSON there.
        let get = try await CLI.run(["get", "--json", "q/x"])
        #expect(get.status == 1)
        #expect(get.stderr.contains("get --json needs -o FILE"), "\(get.stderr)")
    }

    @Test func helpExplainsDurationsSizesAndTheEnvironment() async throws {
        for command in [["--help"], ["all", "--help"], ["flight", "--help"], ["worker", "--help"]] {
            let help = try await CLI.run(command)
            #expect(help.status == 0)
            let text = help.text.replacingOccurrences(of: "\n", with: " ").split(separator: " ").joined(separator: " ")
            #expect(text.contains("DURATION is bare seconds"), "\(command)")
            #expect(text.contains("KiB, MiB, GiB, TiB (powers of 1024)"), "\(command)")
            #expect(text.contains("VALKEYFLIGHT_MAX_MEMORY=1GiB"), "\(command)")
        }
    }

    /// Against a running pipeline: `get -o FILE` says what it wrote (text and --json), `stats --watch` prints
    /// samples with rates (one JSON object per line under --json), flags come from the environment, and `top`
    /// refuses to run without a terminal.
    @Test func getSummaryStatsWatchAndTop() async throws {
        try await withPrivateValkey { valkey in
            var configuration = NodeConfiguration(mode: .all)
            configuration.valkeyURL = valkey.url
            configuration.worker.queues = ["cli"]
            configuration.grace = .seconds(5)
            try await InProcessNode.with(configuration) { node in
                let key = try #require(try await node.submit(try PipelineData.stream(rows: 250), queue: "cli")["key"].string)
                #expect(try await node.waitFinished(key)["status"] == "completed")
                let output = NSTemporaryDirectory() + "vf-cli-get-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).arrows"
                defer { unlink(output) }
                let get = try await CLI.run(["get", "--server", node.location, key, "-o", output])
                #expect(get.status == 0, "\(get.stderr)")
                #expect(get.text.hasPrefix("\(key) -> \(output)  record_batches=1  rows=250  bytes="), "\(get.text)")
                let getJSON = try await CLI.run(["get", "--server", node.location, key, "-o", output],
                                                environment: ["VALKEYFLIGHT_JSON": "1"])
                let object = try JSONSerialization.jsonObject(with: Data(getJSON.stdout)) as? [String: Any]
                #expect(object?["rows"] as? Int == 250, "\(getJSON.text)")
                #expect(object?["key"] as? String == key)

                let watch = try await CLI.run(["stats", "--server", node.location, "--json", "--watch",
                                               "--interval", "100ms", "--count", "3"])
                #expect(watch.status == 0, "\(watch.stderr)")
                let lines = watch.text.split(separator: "\n")
                #expect(lines.count == 3, "\(watch.text)")
                for line in lines {
                    let sample = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                    let queues = sample?["queues"] as? [String: [String: Int]]
                    #expect(queues?["cli"]?["completed"] == 1, "\(line)")
                    #expect((sample?["rates"] as? [String: [String: Double]])?["cli"]?["completed_per_second"] == 0)
                    #expect(sample?["time"] is Double)
                }
                let table = try await CLI.run(["stats", "--server", node.location, "--interval", "50ms", "--count", "2"],
                                              environment: ["VALKEYFLIGHT_WATCH": "yes"])
                #expect(table.status == 0, "\(table.stderr)")
                #expect(table.text.components(separatedBy: "COMPLETED/S").count == 2, "\(table.text)")
                #expect(table.text.components(separatedBy: "\ncli ").count == 3, "\(table.text)")

                let top = try await CLI.run(["top", "--server", node.location])
                #expect(top.status == 1)
                #expect(top.stderr.contains("top needs a terminal; use 'valkeyflight stats --watch'"), "\(top.stderr)")
            }
        }
    }
}
