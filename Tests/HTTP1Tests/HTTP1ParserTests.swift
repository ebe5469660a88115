import Foundation
import HTTP1
import Testing

private func parse(_ text: String, limits: HTTP1Limits = HTTP1Limits()) throws(HTTP1Error) -> (HTTP1Request, Int)? {
    try HTTP1Parser.parse(Array(text.utf8)[...], limits: limits)
}

@Suite struct HTTP1ParserTests {
    @Test func parsesARequestWithQueryAndHeaders() throws {
        let text = "GET /api/batches?queue=demo&status=failed&limit=5 HTTP/1.1\r\nHost: x\r\nX-Thing:  a b \r\n\r\n"
        let (request, consumed) = try #require(try parse(text))
        #expect(consumed == text.utf8.count)
        #expect(request.method == "GET")
        #expect(request.path == "/api/batches")
        #expect(request.queryValue("queue") == "demo")
        #expect(request.queryValue("status") == "failed")
        #expect(request.queryValue("limit") == "5")
        #expect(request.header("x-thing") == "a b")
        #expect(request.header("HOST") == "x")
        #expect(request.keepAlive)
    }

    @Test func bodyNeedsAllItsBytes() throws {
        let head = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
        #expect(try parse(head + "abc") == nil)
        let (request, consumed) = try #require(try parse(head + "hello" + "GET"))
        #expect(request.body == Array("hello".utf8))
        #expect(consumed == head.utf8.count + 5)
    }

    @Test func everyPrefixOfAValidRequestIsIncomplete() throws {
        let text = "POST /x/y%20z HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        let bytes = Array(text.utf8)
        for n in 0..<bytes.count {
            #expect(try HTTP1Parser.parse(bytes[0..<n]) == nil, "prefix \(n)")
        }
        let (request, _) = try #require(try HTTP1Parser.parse(bytes[...]))
        #expect(request.path == "/x/y z")
        #expect(!request.keepAlive)
    }

    @Test func http10KeepsAliveOnlyWhenAsked() throws {
        #expect(try #require(try parse("GET / HTTP/1.0\r\n\r\n")).0.keepAlive == false)
        #expect(try #require(try parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")).0.keepAlive)
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\n\r\n", 400),  // no Host
        ("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\nHost: x\n\n", 400),  // bare LF
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400),
        ("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\u{01}\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n", 413),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ("GET x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}", 400),  // a TLS ClientHello
    ])
    func malformedRequestsGetTheirStatus(text: String, status: Int) {
        #expect(throws: HTTP1Error.self) { try parse(text) }
        do {
            _ = try parse(text)
        } catch {
            #expect(error.status == status, "\(error)")
        }
    }

    @Test func requestLineLimitIs414() {
        let long = "GET /" + String(repeating: "a", count: 9000)
        do {
            _ = try parse(long)
            Issue.record("no error")
        } catch { #expect(error == .requestLineTooLong(limit: 8192)) }
        do {
            _ = try parse(long + " HTTP/1.1\r\nHost: x\r\n\r\n")
            Issue.record("no error")
        } catch { #expect(error.status == 414) }
    }

    @Test func headerLimitsAre431() {
        let big = "GET / HTTP/1.1\r\nHost: x\r\nA: " + String(repeating: "b", count: 33000)
        do {
            _ = try parse(big)
            Issue.record("no error")
        } catch { #expect(error.status == 431) }
        let many = "GET / HTTP/1.1\r\n" + (0..<101).map { "H\($0): v\r\n" }.joined() + "\r\n"
        do {
            _ = try parse(many)
            Issue.record("no error")
        } catch { #expect(error == .headersTooLarge("more than 100 fields")) }
        let hundred = "GET / HTTP/1.1\r\nHost: x\r\n" + (0..<99).map { "H\($0): v\r\n" }.joined() + "\r\n"
        #expect((try? parse(hundred)) != nil)
    }

    @Test func responsesSerializeWithLengthAndConnection() {
        let response = HTTP1Response(status: 404, text: "no\n")
        let text = String(decoding: response.serialized(keepAlive: true), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(text.contains("Content-Length: 3\r\n"))
        #expect(text.contains("Connection: keep-alive\r\n\r\nno\n"))
        let injected = HTTP1Response(status: 200, headers: [("X", "a\r\nSet-Cookie: y")])
        #expect(!String(decoding: injected.serialized(keepAlive: false), as: UTF8.self).contains("Set-Cookie"))
    }
}

@Suite struct HTTP1ConnectionTests {
    @Test func pipelinedRequestsWaitForTheResponseBefore() throws {
        let start = ContinuousClock.now
        var connection = HTTP1Connection(now: start)
        let two = Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let first = two.withUnsafeBytes { connection.receive($0, now: start) }
        guard case .handle(let a) = first else { Issue.record("\(String(describing: first))"); return }
        #expect(a.path == "/a")
        #expect(connection.isHandling)
        let second = connection.responseSent(keepAlive: true, now: start)
        guard case .handle(let b) = second else { Issue.record("\(String(describing: second))"); return }
        #expect(b.path == "/b")
        #expect(connection.responseSent(keepAlive: true, now: start) == nil)
        #expect(connection.responseSent(keepAlive: false, now: start) == .close)
    }

    @Test func slowHeadersTimeOutWith408AndIdleConnectionsClose() {
        let start = ContinuousClock.now
        var slow = HTTP1Connection(headerTimeout: .seconds(1), idleTimeout: .seconds(5), now: start)
        let partial = Array("GET / HTTP/1.1\r\n".utf8)
        #expect(partial.withUnsafeBytes { slow.receive($0, now: start) } == nil)
        #expect(slow.tick(now: start + .milliseconds(500)) == nil)
        #expect(slow.tick(now: start + .seconds(2)) == .refuse(.timeout))
        var idle = HTTP1Connection(headerTimeout: .seconds(1), idleTimeout: .seconds(5), now: start)
        #expect(idle.tick(now: start + .seconds(2)) == nil)
        #expect(idle.tick(now: start + .seconds(6)) == .close)
    }

    @Test func aPeerThatSendsTooMuchWhileARequestIsHandledIsClosed() {
        let start = ContinuousClock.now
        var connection = HTTP1Connection(limits: HTTP1Limits(body: 10), now: start)
        let request = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        guard case .handle = request.withUnsafeBytes({ connection.receive($0, now: start) }) else {
            Issue.record("no request")
            return
        }
        let flood = [UInt8](repeating: 0x41, count: connection.maxBuffered + 1)
        #expect(flood.withUnsafeBytes { connection.receive($0, now: start) } == .close)
    }
}

/// Every fuzz seed and every input that once crashed or hung the harness (scripts/fuzz-http1) is parsed again:
/// it must end in a request, nil or an HTTP1Error, and a request never takes more bytes than it was given.
@Suite struct HTTP1FuzzRegressionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/HTTP1")

    static var inputs: [URL] {
        ["fuzz-corpus", "fuzz-regressions"].flatMap { folder in
            (try? FileManager.default.contentsOfDirectory(at: root.appendingPathComponent(folder),
                                                         includingPropertiesForKeys: nil)) ?? []
        }.filter { !$0.lastPathComponent.hasPrefix(".") }
    }

    @Test func seedsExist() { #expect(Self.inputs.count >= 6) }

    @Test func everyInputParsesOrFailsCleanly() throws {
        for url in Self.inputs {
            let bytes = try [UInt8](Data(contentsOf: url))
            var rest = bytes[...]
            var rounds = 0
            while rounds < 64, !rest.isEmpty {
                rounds += 1
                do {
                    guard let (_, consumed) = try HTTP1Parser.parse(rest) else { break }
                    #expect(consumed > 0 && consumed <= rest.count, "\(url.lastPathComponent)")
                    rest = rest.dropFirst(consumed)
                } catch {
                    #expect((400...505).contains(error.status), "\(url.lastPathComponent)")
                    break
                }
            }
        }
    }
}
