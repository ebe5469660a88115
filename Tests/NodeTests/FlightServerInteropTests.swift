import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// pyarrow's Flight client (the reference implementation) against `valkeyflight flight`, over real sockets
/// (the ValkeyFlight contract (CONTRACT.md) §1–2). The Python side lives in `Tests/Fixtures/Flight/pyarrow_client.py`; it
/// checks data equality itself and reports facts as PyJSON that these tests check against the contract.
@Suite(.timeLimit(.minutes(3)))
struct FlightServerInteropTests {
    /// True if the Python exception report names one of `classes` (the exception class or a base class).
    static func raised(_ error: PyJSON, _ classes: String...) -> Bool {
        error["mro"].array.contains { classes.contains($0.string ?? "") }
    }

    // MARK: every RPC

    @Test func everyRPCFromPyArrow() async throws {
        try await FlightServerProcess.with { server in
            #expect(server.scheme == "grpc")
            let facts = try await PyArrow.run(["rpcs", server.url])

            #expect(facts["handshake_reply"] == "ping", "Handshake without auth answers the client's payload")

            let put = facts["put_path"]
            #expect(put["key"] == "alpha/one")
            #expect(put["rows"] == 2500)
            #expect((put["bytes"].int ?? 0) > 0)
            #expect(!(put["status"].string ?? "").isEmpty)
            #expect(Set(put.object.keys) == ["key", "rows", "bytes", "status"])
            let generated = facts["put_queue_only"]
            #expect(generated["key"].string?.hasPrefix("alpha/") == true)
            #expect(generated["rows"] == 2500)

            let info = facts["info"]
            #expect(info["ticket"] == "alpha/one")
            #expect(info["locations"] == [.string(server.url)], "the endpoint's location is the advertised one")
            #expect(info["total_records"] == 2500)
            #expect(info["total_bytes"] == put["bytes"])
            #expect(facts["get_rows"] == 2500)
            #expect(facts["poll_progress"].double == 1.0, "a stored batch is complete: PollInfo.progress 1")

            #expect(facts["list_all"].array.count == 4)
            #expect(facts["list_all"].array.contains("alpha/one") && facts["list_all"].array.contains("beta/two"))
            #expect(facts["list_alpha"].array.count == 3)
            #expect(facts["list_alpha"].array.allSatisfy { $0.string?.hasPrefix("alpha/") == true })
            #expect(facts["list_beta"] == ["beta/two"])
            #expect(facts["list_none"] == [])

            let actions = facts["actions"].object
            for name in ["health", "stats", "delete"] {
                let description = actions[name]?.string ?? ""
                #expect(!description.isEmpty, "ListActions lacks '\(name)' or its description")
            }
            #expect(facts["health"][0]["status"] == "ok")
            #expect(facts["stats"][0]["batches"] == 4)
            #expect(facts["stats"][0]["queues"]["alpha"]["batches"] == 3)
            #expect(facts["stats"][0]["queues"]["beta"]["rows"] == 10)
            #expect(facts["delete"][0]["key"] == "alpha/one")
            #expect(facts["list_after_delete"].array.count == 3)
            #expect(!facts["list_after_delete"].array.contains("alpha/one"))

            #expect(facts["exchange_code"] == "UNIMPLEMENTED")
            #expect(Self.raised(facts["exchange_error"], "ArrowNotImplementedError"))
        }
    }

    // MARK: every type

    enum Corpus: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case arrowIPCFixtures = "Tests/Fixtures/ArrowIPC/generated/*.arrows"
        case arrowTestingGolden = "arrow-testing cpp-21.0.0 generated_*.stream"

        var testDescription: String { self.rawValue }

        var files: [URL] {
            let (directory, prefix, suffix) = switch self {
            case .arrowIPCFixtures: (PyArrow.fixtures.appendingPathComponent("ArrowIPC/generated"), "", ".arrows")
            case .arrowTestingGolden: (CLI.golden, "generated_", ".stream")
            }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            return names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(suffix) }.sorted().map { directory.appendingPathComponent($0) }
        }

        var minimumCount: Int { self == .arrowIPCFixtures ? 19 : 32 }
    }

    /// pyarrow reads each file, puts it, gets it back and compares (metadata included, floats bit-exact); the
    /// file's own IPC messages also go through raw DoPut/DoGet and come back byte for byte.
    @Test(arguments: Corpus.allCases)
    func everyTypeRoundTrips(corpus: Corpus) async throws {
        let files = corpus.files
        #expect(files.count >= corpus.minimumCount, "fixtures missing under \(corpus.rawValue)")
        try await FlightServerProcess.with { server in
            let facts = try await PyArrow.run(["roundtrip", server.url] + files.map(\.path))
            let results = facts["files"].array
            #expect(results.count == files.count)
            for (file, result) in zip(files, results) {
                #expect(result["file"] == .string(file.lastPathComponent))
                #expect(result["ok"] == true, "\(file.lastPathComponent): \(result["reason"])")
            }
        }
    }

    @Test func dictionaryDeltasAreStoredByteForByte() async throws {
        let file = PyArrow.fixtures.appendingPathComponent("ArrowIPC/generated/dictionary_delta.arrows")
        try await FlightServerProcess.with { server in
            let facts = try await PyArrow.run(["delta", server.url, file.path])
            let deltas = try #require(facts["file_deltas"].int)
            #expect(deltas > 0)
            #expect(facts["raw_get_deltas"] == .int(deltas), "the stream got back keeps its dictionary deltas")
            #expect(facts["pyarrow_put_deltas"] == .int(deltas), "pyarrow's delta-emitting writer round-trips")
            #expect(facts["raw_put"]["rows"] == 150)
        }
    }

    // MARK: size and concurrency

    /// 1 GiB of int64 + float64 in 64K-row batches, put and got back; pyarrow checks every value against
    /// regenerated data and by checksum.
    @Test(.timeLimit(.minutes(2)))
    func oneGibibyteTableRoundTrips() async throws {
        try await FlightServerProcess.with { server in
            let started = Date()
            let facts = try await PyArrow.run(["big", server.url, "--rows", "65536", "--batches", "1024", "--timeout", "90"], timeout: 100)
            let wall = Date().timeIntervalSince(started)
            #expect(facts["batches"] == 1024)
            #expect(facts["rows"] == .int(65536 * 1024))
            #expect(facts["put"]["rows"] == .int(65536 * 1024))
            #expect((facts["put"]["bytes"].int ?? 0) >= 1 << 30)
            #expect(facts["sum_id"] == .int((65536 * 1024) * (65536 * 1024 - 1) / 2))
            print("FlightServerInteropTests: 1 GiB table (\(facts["put"]["bytes"]) bytes stored) — DoPut \(facts["put_seconds"]) s "
                + "(\(facts["put_mb_s"]) MB/s), DoGet \(facts["get_seconds"]) s (\(facts["get_mb_s"]) MB/s), "
                + "wall time with Python start and checks \(String(format: "%.2f", wall)) s")
            #expect(wall < 90, "1 GiB round trip took \(wall) s")
        }
    }

    @Test func sixteenConcurrentClients() async throws {
        try await FlightServerProcess.with { server in
            let facts = try await PyArrow.run(["concurrent", server.url, "--clients", "16"])
            let clients = facts["clients"].array
            #expect(clients.count == 16)
            for (index, client) in clients.enumerated() {
                #expect(client["ok"] == true, "client \(index): \(client["reason"])")
            }
            #expect(facts["listed"] == .array((0..<16).map { .string(String(format: "conc/c%02d", $0)) }))
        }
    }

    // MARK: TLS and auth

    @Test func tlsWithASelfSignedCertificate() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vf-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cert = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let openssl = try TestChildProcess(URL(fileURLWithPath: "/usr/bin/env"), [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert,
        ])
        openssl.closeInput()
        #expect(await openssl.waitForExit(within: 30))
        try #require(openssl.exitStatus == 0, "openssl failed: \(openssl.stderr)")

        try await FlightServerProcess.with(["--tls-cert", cert, "--tls-key", key]) { server in
            #expect(server.scheme == "grpc+tls", "the listening line says grpc+tls")
            let facts = try await PyArrow.run(["tls", server.url, "--root-certs", cert])
            #expect(facts["put"]["key"] == "secure/one")
            #expect(facts["put"]["rows"] == 3000)
            #expect(facts["location"] == .string(server.url), "FlightInfo advertises the grpc+tls location")
            #expect(Self.raised(facts["untrusted_error"], "FlightUnavailableError"), "a client not trusting the cert fails")
            #expect(Self.raised(facts["plaintext_error"], "FlightError"), "plaintext against the TLS port fails")
        }
    }

    @Test func basicAuthGivesABearerToken() async throws {
        try await FlightServerProcess.with(["--auth-basic", "alice:secret"]) { server in
            let facts = try await PyArrow.run(["auth", server.url, "--user", "alice", "--password", "secret"])
            #expect(facts["pair_name"] == "authorization")
            #expect(facts["pair_value_prefix"] == "Bearer ")
            #expect(Self.raised(facts["wrong_password"], "FlightUnauthenticatedError"), "\(facts["wrong_password"])")
            #expect(Self.raised(facts["wrong_user"], "FlightUnauthenticatedError"), "\(facts["wrong_user"])")
            #expect(facts["put"]["key"] == "auth/one")
            #expect(facts["list_with_token"] == ["auth/one"])
            #expect(facts["actions_with_token"] == ["delete", "health", "stats"])
            for group in ["without_token", "bogus_token"] {
                let calls = facts[group].object
                #expect(calls.count == 7)
                for (call, error) in calls {
                    if call == "get_schema" {
                        // pyarrow 26's get_schema raises OSError for every failed status; the raw check below
                        // pins the code.
                        #expect(error["message"].string?.contains("unauthenticated") == true, "\(group) \(call): \(error)")
                    } else {
                        #expect(Self.raised(error, "FlightUnauthenticatedError"), "\(group) \(call): \(error)")
                    }
                }
            }
            #expect(facts["list_after"] == ["auth/one"], "a rejected put stored nothing")
            let raw = facts["raw_without_token"].object
            #expect(raw.count == 9)
            for (method, code) in raw {
                #expect(code == "UNAUTHENTICATED", "\(method) without a token")
            }
        }
    }

    // MARK: bad input

    @Test func badRequestsGetFlightStatusCodes() async throws {
        try await FlightServerProcess.with { server in
            let facts = try await PyArrow.run(["bad", server.url])
            let pyarrow = facts["pyarrow"]
            for name in ["get_unknown_ticket", "get_garbage_ticket", "info_unknown", "schema_unknown", "delete_unknown"] {
                #expect(Self.raised(pyarrow[name], "ArrowKeyError"), "\(name) → NOT_FOUND: \(pyarrow[name])")
            }
            for name in ["info_cmd", "schema_cmd", "info_bad_queue", "info_one_element", "put_cmd", "put_bad_queue", "put_bad_id",
                         "put_too_long_path"] {
                #expect(Self.raised(pyarrow[name], "ArrowInvalid"), "\(name) → INVALID_ARGUMENT: \(pyarrow[name])")
            }
            // pyarrow has no exception class for ALREADY_EXISTS: it raises a plain ArrowException.
            #expect(pyarrow["put_existing"]["message"].string?.contains("already exists") == true, "\(pyarrow["put_existing"])")

            let expected: [String: String] = [
                "get_unknown_ticket": "NOT_FOUND", "info_unknown": "NOT_FOUND",
                "info_cmd": "INVALID_ARGUMENT", "schema_cmd": "INVALID_ARGUMENT", "info_bad_queue": "INVALID_ARGUMENT",
                "put_cmd": "INVALID_ARGUMENT", "put_no_descriptor": "INVALID_ARGUMENT", "put_bad_queue": "INVALID_ARGUMENT",
                "put_empty_stream": "INVALID_ARGUMENT", "put_existing": "ALREADY_EXISTS",
            ]
            for (name, code) in expected {
                #expect(facts["raw"][name]["code"] == .string(code), "\(name): \(facts["raw"][name])")
                #expect(!(facts["raw"][name]["details"].string ?? "").isEmpty, "\(name) has a message saying why")
            }
            #expect(facts["listed"] == ["bad/exists"], "no rejected put left anything behind")
        }
    }

    static let malformedVariants = [
        "garbage_schema_header", "garbage_batch_header", "truncated_schema_header", "truncated_batch_header",
        "truncated_body", "batch_before_schema", "flipped_batch_header", "body_without_header_after_batch", "second_schema",
        "descriptor_only", "dictionary_never_sent", "dictionary_id_not_in_schema",
    ]

    @Test func malformedIPCInDoPutIsInvalidArgumentAndNothingIsStored() async throws {
        try await FlightServerProcess.with { server in
            let facts = try await PyArrow.run(["malformed", server.url])
            for name in Self.malformedVariants {
                let variant = facts[name]
                #expect(variant["code"] == "INVALID_ARGUMENT", "\(name): \(variant)")
                #expect(variant["listed_after"] == false, "\(name): listed after the failed put")
                #expect(variant["get_after"] == "NOT_FOUND", "\(name): readable after the failed put")
                #expect(variant["good_put_after"] == nil, "\(name): the key is not free again: \(variant["good_put_after"])")
            }
            #expect(facts["stats"]["batches"] == .int(Self.malformedVariants.count), "only the good puts are stored")
            #expect(facts["stats"]["reserved_bytes"] == 0, "failed puts released their reservations")
        }
    }

    @Test func cancelledDoPutLeavesNothingBehind() async throws {
        try await FlightServerProcess.with { server in
            let facts = try await PyArrow.run(["cancel", server.url])
            #expect((facts["during"]["reserved_bytes"].int ?? 0) > 0, "the put was under way: \(facts["during"])")
            #expect(facts["during"]["listed"] == [], "a batch is invisible until complete")
            #expect(facts["during"]["get"] == "NOT_FOUND")
            #expect(facts["after"]["stats"]["reserved_bytes"] == 0, "the cancelled put released its reservation")
            #expect(facts["after"]["stats"]["batches"] == 0)
            #expect(facts["after"]["listed"] == [])
            #expect(facts["after"]["get"] == "NOT_FOUND")
            #expect(facts["put_after"] == nil, "the key is free again: \(facts["put_after"])")
            #expect(facts["get_after_put"] == 500)
        }
    }

    @Test func memoryLimitRejectsAndStoresNothing() async throws {
        try await FlightServerProcess.with(["--max-memory", "1MiB"]) { server in
            let facts = try await PyArrow.run(["memory", server.url, "--mib", "4"])
            #expect(facts["raw"]["code"] == "RESOURCE_EXHAUSTED", "\(facts["raw"])")
            // pyarrow maps RESOURCE_EXHAUSTED to ArrowInvalid (its message keeps the gRPC status).
            #expect(facts["pyarrow_error"]["message"].string?.contains("resource exhausted") == true, "\(facts["pyarrow_error"])")
            #expect(facts["listed"] == [])
            #expect(facts["get_after"] == "NOT_FOUND")
            #expect(facts["stats"]["batches"] == 0)
            #expect(facts["stats"]["bytes"] == 0)
            #expect(facts["stats"]["reserved_bytes"] == 0)
            #expect(facts["stats"]["max_memory"] == .int(1 << 20))
            #expect(facts["small_put"]["rows"] == 1000, "a put within the limit still works afterwards")
            #expect(facts["stats_after_delete"]["bytes"] == 0, "delete frees the memory")
        }
    }

    @Test func batchesExpireAfterTheirTTL() async throws {
        try await FlightServerProcess.with(["--ttl", "2s"]) { server in
            let facts = try await PyArrow.run(["ttl", server.url, "--wait", "3"])
            #expect(facts["listed_before"] == ["ttl/one"])
            #expect(facts["get_early"] == nil, "the batch is readable within its TTL")
            #expect(Self.raised(facts["get_after"], "ArrowKeyError"), "DoGet after the TTL → NOT_FOUND: \(facts["get_after"])")
            #expect(Self.raised(facts["info_after"], "ArrowKeyError"), "GetFlightInfo after the TTL: \(facts["info_after"])")
            #expect(facts["listed_after"] == [])
            #expect(facts["stats_after"]["bytes"] == 0)
        }
    }

    // MARK: shutdown

    /// An idle connected pyarrow client does not hold the server up: SIGTERM/SIGINT → exit 0 promptly.
    @Test(arguments: [SIGTERM, SIGINT])
    func signalStopsPromptlyWithAClientConnected(signal: Int32) async throws {
        let server = try await FlightServerProcess.start()
        defer { server.child.terminate() }
        let client = try PyArrow.start(["inflight", server.url])
        defer { client.terminate() }
        try #require(await client.nextLine(within: 30) == "ready", "client: \(client.stderr)")
        // Promptly: a server held up by the idle client would exit only after the 10 s drain grace; 8 s tells
        // the two apart even on a loaded machine (where a prompt exit was seen to take 4 s).
        let stop = await server.stop(signal, within: 8)
        #expect(stop.exited, "still running 8 s after signal \(signal)")
        #expect(stop.status == 0, "exit status \(String(describing: stop.status)); stderr:\n\(stop.stderr)")
        client.write("go\n")
        client.closeInput()
        #expect(await client.waitForExit(within: 30))
        let facts = try PyJSON.lastLine(of: client.stdout)
        #expect(Self.raised(facts["call_after"], "FlightUnavailableError"), "the stopped server still answers: \(facts["call_after"])")
    }

    /// SIGTERM while a DoGet is streaming: the call in flight finishes, then the process exits 0.
    @Test func sigtermLetsADoGetInFlightFinish() async throws {
        // A grace far beyond the checks below: with the default 10 s, a test task starved on a loaded machine
        // looked only after the grace had ended the call.
        let server = try await FlightServerProcess.start(["--grace", "120s"])
        defer { server.child.terminate() }
        let client = try PyArrow.start(["inflight", server.url, "--mib", "64"])
        defer { client.terminate() }
        try #require(await client.nextLine(within: 30) == "ready", "client: \(client.stderr)")
        server.child.send(SIGTERM)
        #expect(await server.child.waitForStderr(containing: "shutting down", within: 20), "no shutdown log line: \(server.child.stderr)")
        #expect(server.child.process.isRunning, "the server exited with a DoGet in flight: \(server.child.stderr)")
        client.write("go\n")
        client.closeInput()
        #expect(await client.waitForExit(within: 30))
        #expect(client.exitStatus == 0, "client: \(client.stderr)")
        let facts = try PyJSON.lastLine(of: client.stdout)
        #expect(facts["stream_error"] == nil, "the DoGet in flight was cut: \(facts["stream_error"])")
        #expect(facts["batches"] == facts["expected_batches"])
        let stop = await server.stop(SIGTERM, within: 8)
        #expect(stop.exited && stop.status == 0, "exit status \(String(describing: stop.status)); stderr:\n\(stop.stderr)")
    }
}
