import FlightRPC
import Foundation
import Node
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// HTTP on the node's port: health, readiness, the JSON API with retry and cancel, auth and CSRF, clear 4xx
/// answers to bad requests, `--http-listen`, a worker's `--listen`, and the log lines of `--log-format json`.
@Suite(.serialized) struct OperationsTests {
    static let failing = "cat >/dev/null; echo 'boom: the disk is on fire' >&2; exit 3"

    static func pipeline(_ url: String, queues: [String], edit: (inout NodeConfiguration) -> Void = { _ in })
        -> NodeConfiguration
    {
        var configuration = NodeConfiguration(mode: .all)
        configuration.valkeyURL = url
        configuration.worker.queues = queues
        configuration.worker.policy.maxAttempts = 1
        configuration.grace = .seconds(5)
        edit(&configuration)
        return configuration
    }

    @Test func healthReadinessAndTheJSONAPIShareTheGRPCPort() async throws {
        try await withScript(Self.failing) { failing in
            try await withPrivateValkey { valkey in
                let configuration = Self.pipeline(valkey.url, queues: ["api"]) {
                    $0.processor = .exec(command: failing, persistent: false)
                }
                try await InProcessNode.with(configuration) { node in
                    let base = HTTPProbe.base(node.location)
                    let health = try await HTTPProbe.get(base + "/healthz")
                    #expect(health.status == 200 && health.body == "ok\n")
                    #expect(try await HTTPProbe.get(base + "/readyz").status == 200)

                    let put = try await node.submit(try PipelineData.stream(rows: 7), queue: "api")
                    let key = try #require(put["key"].string)
                    #expect(try await node.waitFinished(key)["status"] == "failed")
                    // Not claimed by any worker of this node: stays pending until cancelled.
                    let idle = try #require(try await node.submit(try PipelineData.stream(rows: 2), queue: "idle")["key"].string)

                    let stats = try await HTTPProbe.get(base + "/api/stats")
                    #expect(stats.status == 200)
                    #expect(stats.json["api"]["failed"] == 1)
                    #expect(stats.json["idle"]["pending"] == 1)
                    // The same JSON as the Flight action.
                    #expect(stats.json == (try await node.action("stats").first ?? .null))

                    let failed = try await HTTPProbe.get(base + "/api/batches?queue=api&status=failed&limit=5")
                    #expect(failed.status == 200)
                    #expect(failed.json.array.count == 1)
                    #expect(failed.json[0]["key"] == .string(key))
                    #expect(failed.json[0]["last_error"].string?.contains("boom: the disk is on fire") == true)
                    #expect(try await HTTPProbe.get(base + "/api/batches?status=nonsense").status == 400)
                    #expect(try await HTTPProbe.get(base + "/api/batches?limit=-1").status == 400)

                    let detail = try await HTTPProbe.get(base + "/api/batches/" + key)
                    #expect(detail.status == 200)
                    #expect(detail.json["status"]["status"] == "failed")
                    #expect(detail.json["data"]["rows"] == 7)
                    #expect(detail.json["data"]["schema"][0]["name"] == "id")
                    #expect(detail.json["data"]["schema"][1]["type"] == "float64")
                    #expect(detail.json["data"]["preview"].array.count == 7)
                    #expect(detail.json["data"]["preview"][3]["id"] == 3)
                    #expect(detail.json["data"]["preview"][3]["price"] == .double(1.5))
                    #expect(try await HTTPProbe.get(base + "/api/batches/api/unknown-id").status == 404)
                    #expect(try await HTTPProbe.get(base + "/api/batches/bad%20queue/x").status == 400)

                    // POSTs need the CSRF header; with it they are the actions.
                    let csrf = "X-Requested-With: test"
                    #expect(try await HTTPProbe.get(base + "/api/batches/\(key)/retry", method: "POST").status == 403)
                    let foreign = try await HTTPProbe.get(base + "/api/batches/\(key)/retry", method: "POST",
                                                          headers: [csrf, "Origin: http://evil.example"])
                    #expect(foreign.status == 403)
                    #expect(try await HTTPProbe.get(base + "/api/batches/\(key)/retry").status == 405)
                    let retried = try await HTTPProbe.get(base + "/api/batches/\(key)/retry", method: "POST", headers: [csrf])
                    #expect(retried.status == 200, "\(retried.body)")
                    #expect(retried.json["key"] == .string(key))
                    #expect(retried.json["attempts"] == 0)
                    #expect(try await node.waitFinished(key)["status"] == "failed")
                    let cancelled = try await HTTPProbe.get(base + "/api/batches/\(idle)/cancel", method: "POST", headers: [csrf])
                    #expect(cancelled.status == 200)
                    #expect(try await node.status(idle)["status"] == "cancelled")
                    // Cancelling a finished batch is a conflict, not a crash.
                    #expect(try await HTTPProbe.get(base + "/api/batches/\(idle)/cancel", method: "POST", headers: [csrf]).status == 409)

                    #expect(try await HTTPProbe.get(base + "/no/such/path").status == 404)
                    #expect(try await HTTPProbe.get(base + "/metrics", method: "DELETE").status == 405)
                    // gRPC still works on the same port.
                    #expect(try await node.action("health").first?["status"] == "ok")
                }
            }
        }
    }

    @Test func readinessFailsWhileValkeyIsUnreachable() async throws {
        try await withPrivateValkey { valkey in
            var configuration = NodeConfiguration(mode: .coordinator)
            configuration.valkeyURL = valkey.url
            configuration.grace = .seconds(2)
            try await InProcessNode.with(configuration) { node in
                let base = HTTPProbe.base(node.location)
                #expect(try await HTTPProbe.get(base + "/readyz").status == 200)
                await valkey.stop()
                let ready = try await HTTPProbe.get(base + "/readyz")
                #expect(ready.status == 503)
                #expect(ready.body.contains("Valkey unreachable"), "\(ready.body)")
                #expect(try await HTTPProbe.get(base + "/healthz").status == 200)
            }
        }
    }

    @Test func authProtectsEverythingButHealthz() async throws {
        try await withPrivateValkey { valkey in
            let configuration = Self.pipeline(valkey.url, queues: ["auth"]) {
                $0.auth = FlightBasicAuth(username: "ops", password: "s3cret")
            }
            try await InProcessNode.with(configuration) { node in
                let base = HTTPProbe.base(node.location)
                #expect(try await HTTPProbe.get(base + "/healthz").status == 200)
                for path in ["/", "/metrics", "/readyz", "/api/stats", "/api/batches"] {
                    let refused = try await HTTPProbe.get(base + path)
                    #expect(refused.status == 401, "\(path)")
                    #expect(refused.headers["WWW-Authenticate"].string?.hasPrefix("Basic") == true)
                }
                let basic = "Authorization: Basic " + Data("ops:s3cret".utf8).base64EncodedString()
                let wrong = "Authorization: Basic " + Data("ops:nope".utf8).base64EncodedString()
                #expect(try await HTTPProbe.get(base + "/api/stats", headers: [wrong]).status == 401)
                #expect(try await HTTPProbe.get(base + "/api/stats", headers: [basic]).status == 200)
                #expect(try await HTTPProbe.get(base + "/metrics", headers: [basic]).status == 200)
                #expect(try await HTTPProbe.get(base + "/", headers: [basic]).body.contains("<title>ValkeyFlight"))
                // The bearer token of a Flight Handshake works too.
                let token = try await node.client.authenticateBasic(username: "ops", password: "s3cret")
                #expect(try await HTTPProbe.get(base + "/api/stats", headers: ["Authorization: Bearer \(token)"]).status == 200)
                #expect(try await HTTPProbe.get(base + "/api/stats", headers: ["Authorization: Bearer nope"]).status == 401)
                // A POST needs both the credentials and the CSRF header.
                let put = try await node.submit(try PipelineData.stream(rows: 1), queue: "idle")
                let key = try #require(put["key"].string)
                #expect(try await HTTPProbe.get(base + "/api/batches/\(key)/cancel", method: "POST",
                                                headers: ["X-Requested-With: t"]).status == 401)
                #expect(try await HTTPProbe.get(base + "/api/batches/\(key)/cancel", method: "POST",
                                                headers: [basic]).status == 403)
                #expect(try await HTTPProbe.get(base + "/api/batches/\(key)/cancel", method: "POST",
                                                headers: [basic, "X-Requested-With: t"]).status == 200)
            }
        }
    }

    @Test func badRequestsGetClearAnswersAndTheConnectionCloses() async throws {
        var configuration = NodeConfiguration(mode: .flight)
        configuration.grace = .seconds(2)
        try await InProcessNode.with(configuration) { node in
            let port = HTTPProbe.port(node.location)
            func answer(_ text: String) async throws -> (String, Bool) {
                try await HTTPProbe.raw(port: port, Array(text.utf8))
            }
            let cases: [(String, String)] = [
                ("GARBAGE\u{01}\r\n\r\n", "HTTP/1.1 400 "),
                ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),  // no Host
                ("GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 414 "),
                ("GET / HTTP/1.1\r\nHost: x\r\nBig: " + String(repeating: "b", count: 40000) + "\r\n\r\n", "HTTP/1.1 431 "),
                ("GET / HTTP/3.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 "),
                ("POST /api/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", "HTTP/1.1 413 "),
                ("POST /api/stats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 501 "),
            ]
            for (request, status) in cases {
                let (response, closed) = try await answer(request)
                #expect(response.hasPrefix(status), "\(request.prefix(60).debugDescription) → \(response.prefix(80).debugDescription)")
                #expect(closed, "\(request.prefix(40).debugDescription) left the connection open")
            }
            // Keep-alive: two pipelined requests on one connection, then Connection: close.
            let (two, closed) = try await answer(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(two.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(two)")
            #expect(closed)
            // A request that never completes is answered 408 after the header timeout (10 s).
            let (slow, slowClosed) = try await HTTPProbe.raw(port: port, Array("GET /healthz HTTP/1.1\r\n".utf8), readSeconds: 25)
            #expect(slow.hasPrefix("HTTP/1.1 408 "), "\(slow)")
            #expect(slowClosed)
            // gRPC on the same port is untouched.
            _ = try await node.client.listActions()
        }
    }

    @Test func httpListenMovesHTTPToItsOwnPortOrTurnsItOff() async throws {
        try await FlightServerProcess.with(["--http-listen", "127.0.0.1:0"]) { server in
            let line = try #require(await server.child.nextLine(within: 20))
            let match = try #require(line.wholeMatch(of: /listening on http:\/\/127\.0\.0\.1:([0-9]+)/), "\(line)")
            let port = try #require(Int(match.1))
            #expect(try await HTTPProbe.get("http://127.0.0.1:\(port)/healthz").status == 200)
            let metrics = try await HTTPProbe.metrics("http://127.0.0.1:\(port)/metrics")
            #expect(metrics.type("valkeyflight_store_batches") == "gauge")
            // The gRPC port no longer speaks HTTP/1.1.
            let (response, _) = try await HTTPProbe.raw(port: server.port, Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
                                                        readSeconds: 10)
            #expect(!response.contains("200 OK"))
        }
        try await FlightServerProcess.with(["--http-listen", "off"]) { server in
            let (response, _) = try await HTTPProbe.raw(port: server.port, Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
                                                        readSeconds: 10)
            #expect(!response.contains("200 OK"))
        }
        let bad = try await CLI.run(["flight", "--http-listen", "nowhere"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("--http-listen"))
    }

    @Test func httpsAndGRPCShareATLSPortByALPN() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vf-ops-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cert = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let openssl = try TestChildProcess(URL(fileURLWithPath: "/usr/bin/env"), [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert,
        ])
        openssl.closeInput()
        #expect(await openssl.waitForExit(within: 30))
        try #require(openssl.exitStatus == 0, "openssl failed: \(openssl.stderr)")
        try await FlightServerProcess.with(["--tls-cert", cert, "--tls-key", key]) { server in
            #expect(server.scheme == "grpc+tls")
            // urllib offers ALPN http/1.1 (or none): HTTPS on the gRPC port.
            let health = try await HTTPProbe.get("https://localhost:\(server.port)/healthz", cafile: cert)
            #expect(health.status == 200 && health.body == "ok\n")
            let stats = try await HTTPProbe.get("https://localhost:\(server.port)/metrics", cafile: cert)
            #expect(stats.body.contains("# TYPE valkeyflight_store_batches gauge"))
            // pyarrow offers h2: gRPC on the same port.
            let facts = try await PyArrow.run(["tls", server.url, "--root-certs", cert])
            #expect(facts["put"]["rows"] == 3000)
        }
    }

    @Test func aWorkerServesHTTPOnItsListenAddressAndLogsJSONLines() async throws {
        try await withPrivateValkey { valkey in
            let flight = try TestChildProcess(CLI.binary, ["flight", "--listen", "127.0.0.1:0", "--valkey", valkey.url,
                                                           "--log-format", "json", "--log-level", "debug"])
            defer { flight.terminate() }
            let flightLine = try #require(await flight.nextLine(within: 20))
            let flightPort = try #require(flightLine.wholeMatch(of: /listening on grpc:\/\/127\.0\.0\.1:([0-9]+)/).flatMap { Int($0.1) })
            let worker = try TestChildProcess(CLI.binary, ["worker", "--valkey", valkey.url, "--queue", "logs",
                                                           "--listen", "127.0.0.1:0", "--log-format", "json"])
            defer { worker.terminate() }
            let workerLine = try #require(await worker.nextLine(within: 20))
            let workerPort = try #require(workerLine.wholeMatch(of: /listening on http:\/\/127\.0\.0\.1:([0-9]+)/).flatMap { Int($0.1) })
            #expect(try await HTTPProbe.get("http://127.0.0.1:\(workerPort)/healthz").status == 200)
            #expect(try await HTTPProbe.get("http://127.0.0.1:\(workerPort)/readyz").status == 200)

            let file = NSTemporaryDirectory() + "vf-ops-\(UUID().uuidString).arrows"
            try Data(try PipelineData.stream(rows: 4)).write(to: URL(fileURLWithPath: file))
            defer { unlink(file) }
            let submit = try await CLI.run(["submit", file, "--queue", "logs", "--wait", "--server", "grpc://127.0.0.1:\(flightPort)"])
            #expect(submit.status == 0, "\(submit.stderr)")

            // Info: one JSON line per batch transition, with its context.
            #expect(await worker.waitForStderr(containing: "\"outcome\":\"completed\"", within: 20))
            let transition = try #require(worker.stderr.split(separator: "\n").first { $0.contains("\"outcome\":\"completed\"") })
            let fields = try PyJSON.lastLine(of: String(transition))
            #expect(fields["level"] == "info")
            #expect(fields["queue"] == "logs")
            #expect(fields["attempt"] == "1")
            #expect(fields["worker"].string?.isEmpty == false)
            #expect(fields["duration"].string?.hasSuffix("ms") == true)
            #expect(fields["key"].string?.hasPrefix("logs/") == true)
            // Debug: one line per RPC, with method, peer, status, bytes and duration.
            #expect(await flight.waitForStderr(containing: "\"method\":\"DoPut\"", within: 20))
            let rpc = try #require(flight.stderr.split(separator: "\n").first { $0.contains("\"method\":\"DoPut\"") })
            let call = try PyJSON.lastLine(of: String(rpc))
            #expect(call["message"] == "rpc")
            #expect(call["peer"] == "127.0.0.1")
            #expect(call["status"] == "OK")
            #expect(Int(call["received_bytes"].string ?? "") ?? 0 > 0)
            #expect(call["duration"].string?.hasSuffix("ms") == true)

            let metrics = try await HTTPProbe.metrics("http://127.0.0.1:\(workerPort)/metrics")
            #expect(metrics.value("valkeyflight_batch_attempts", "valkeyflight_batch_attempts_total",
                                  ["queue": "logs", "outcome": "completed"]) == 1)
            worker.send(SIGTERM)
            flight.send(SIGTERM)
            #expect(await worker.waitForExit(within: 10))
            #expect(await flight.waitForExit(within: 10))
            #expect(worker.exitStatus == 0)
        }
    }
}
