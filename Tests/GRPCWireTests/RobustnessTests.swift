import Foundation
import GRPCWire
import Synchronization
import Testing

/// A raw TCP client speaking hand-built HTTP/2 frames (to misbehave on purpose).
struct RawConnection {
    let fd: Int32

    init(port: Int) throws {
        // Close-on-exec: a child another test spawns meanwhile must not inherit it (closing it here would then
        // not close the connection).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard fd >= 0, rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the peer closes; true when it closed within the receive timeout (5 s). The blocking reads run
    /// off the cooperative pool.
    func readsUntilClosed() async -> Bool {
        let fd = self.fd
        return await TestSupport.offPool { RawConnection(fd: fd).readsUntilClosedBlocking() }
    }

    private init(fd: Int32) { self.fd = fd }

    private func readsUntilClosedBlocking() -> Bool {
        var buf = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<10_000 {
            let n = recv(self.fd, &buf, buf.count, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
        return false
    }

    func close() { _ = Glibc.close(self.fd) }

    /// A listening socket on 127.0.0.1 with a port the kernel picked (close-on-exec): its descriptor and port.
    static func listen() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && Glibc.listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, bound else {
            if fd >= 0 { Glibc.close(fd) }
            throw POSIXError(.EADDRNOTAVAIL)
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [
            UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
            UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF),
        ] + payload
    }

    /// HPACK literal header fields without indexing (names and values under 127 bytes).
    static func headerBlock(_ headers: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (n, v) in headers {
            out.append(0)
            out.append(UInt8(n.utf8.count))
            out += Array(n.utf8)
            out.append(UInt8(v.utf8.count))
            out += Array(v.utf8)
        }
        return out
    }

    static func u32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }
}

@Suite(.serialized) struct RobustnessTests {
    @Test func thousandConcurrentStreamsOnOneConnection() async throws {
        let probe = Probe()
        let server = try ServerBehaviourTests.server(probe)
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let calls = (0..<1000).map { _ in channel.makeCall(path: ServerBehaviourTests.holdPath, timeout: .seconds(60)) }
        // Every call sends and gets one echo while all stay open.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, call) in calls.enumerated() {
                group.addTask {
                    try await call.send([UInt8(i & 0xFF), UInt8(i >> 8)])
                    let echo = try await call.receive()
                    #expect(echo == [UInt8(i & 0xFF), UInt8(i >> 8)])
                }
            }
            try await group.waitForAll()
        }
        #expect(probe.maxActive.load(ordering: .relaxed) == 1000)
        #expect(server.connectionCount == 1)
        for call in calls { call.finishSending() }
        for call in calls {
            #expect(try await call.receive() == nil)
            #expect(await call.status().code == .ok)
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(2))
    }

    @Test func twoHundredConnections() async throws {
        let probe = Probe()
        let server = try ServerBehaviourTests.server(probe)
        let channels = try (0..<200).map { _ in try TestSupport.channel(port: server.port, tls: false) }
        let calls = channels.map { $0.makeCall(path: ServerBehaviourTests.holdPath, timeout: .seconds(60)) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for call in calls {
                group.addTask {
                    try await call.send([42])
                    #expect(try await call.receive() == [42])
                }
            }
            try await group.waitForAll()
        }
        #expect(server.connectionCount == 200)
        #expect(probe.maxActive.load(ordering: .relaxed) == 200)
        for call in calls { call.finishSending() }
        for call in calls { #expect(await call.status().code == .ok) }
        for c in channels { c.close() }
        #expect(await ServerBehaviourTests.waitUntil { server.connectionCount == 0 })
        await server.shutdown(gracePeriod: .seconds(2))
    }

    @Test func clientThatStopsReadingKeepsServerMemoryBounded() async throws {
        let probe = Probe()
        let server = try ServerBehaviourTests.server(probe)
        let raw = try RawConnection(port: server.port)
        // Huge windows: only TCP and the server's own send limits can hold the 200 MiB back.
        var out = RawConnection.preface
        out += RawConnection.frame(type: 4, flags: 0, stream: 0, [0, 4] + RawConnection.u32(0x7FFF_FFFF))
        out += RawConnection.frame(type: 8, flags: 0, stream: 0, RawConnection.u32(0x7FFF_FFFF - 65535))
        out += RawConnection.frame(type: 4, flags: 1, stream: 0, [])
        let headers = RawConnection.headerBlock([
            (":method", "POST"), (":scheme", "http"), (":path", ServerBehaviourTests.floodPath),
            (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ])
        out += RawConnection.frame(type: 1, flags: 0x4, stream: 1, headers)
        out += RawConnection.frame(type: 0, flags: 0x1, stream: 1, [0, 0, 0, 0, 1, 200])
        raw.send(out)
        // The handler wants to send 200 MiB; it must stall once the bounded buffers are full.
        #expect(await ServerBehaviourTests.waitUntil { probe.sent.load(ordering: .relaxed) > 0 })
        let stalled = await ServerBehaviourTests.waitUntilStalled { probe.sent.load(ordering: .relaxed) }
        #expect(stalled != nil, "the sender never stalled: \(probe.sent.load(ordering: .relaxed)) MiB sent")
        #expect((stalled ?? .max) < 48, "\(stalled ?? -1) MiB accepted for a client that reads nothing")
        // The server still serves others meanwhile.
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(
            try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[5][...]], timeout: .seconds(10))
                == [5])
        raw.close()
        #expect(await ServerBehaviourTests.waitUntil(.seconds(30)) { server.connectionCount == 1 })
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    static let garbage: [(String, [UInt8])] = [
        ("http1 request", Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("random bytes", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }),
        (
            "DATA on stream 0",
            RawConnection.preface + RawConnection.frame(type: 4, flags: 0, stream: 0, [])
                + RawConnection.frame(type: 0, flags: 0, stream: 0, [1, 2, 3])
        ),
        (
            "oversized frame",
            RawConnection.preface + RawConnection.frame(type: 4, flags: 0, stream: 0, [])
                + [0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 100)
        ),
        (
            "bad HPACK",
            RawConnection.preface + RawConnection.frame(type: 4, flags: 0, stream: 0, [])
                + RawConnection.frame(type: 1, flags: 0x5, stream: 1, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        ),
    ]

    @Test func garbageClosesOnlyThatConnection() async throws {
        let server = try ServerBehaviourTests.server(Probe())
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]]) == [1])
        for (name, bytes) in Self.garbage {
            let raw = try RawConnection(port: server.port)
            raw.send(bytes)
            #expect(await raw.readsUntilClosed(), "server kept the connection after \(name)")
            raw.close()
            #expect(
                try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[2][...]], timeout: .seconds(10))
                    == [2], "\(name)")
        }
        // Truncated frames, then the peer goes away.
        for cut in [3, 10, 24, 30] {
            let raw = try RawConnection(port: server.port)
            let valid = RawConnection.preface + RawConnection.frame(type: 4, flags: 0, stream: 0, [0, 4, 0, 1, 0, 0])
            raw.send(Array(valid.prefix(cut)))
            shutdown(raw.fd, Int32(SHUT_WR))
            #expect(await raw.readsUntilClosed(), "truncated at \(cut)")
            raw.close()
        }
        #expect(await ServerBehaviourTests.waitUntil { server.connectionCount == 1 })
        #expect(
            try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[3][...]], timeout: .seconds(10))
                == [3])
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func keepalivePingsKeepHealthyConnectionsAndDropSilentOnes() async throws {
        let server = try ServerBehaviourTests.server(Probe()) {
            // The timeout leaves our channel's loop thread time to answer on a loaded machine.
            $0.keepaliveInterval = .milliseconds(100)
            $0.keepaliveTimeout = .seconds(2)
        }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]]) == [1])
        // A raw peer that never answers PINGs is sent PINGs (which it reads here, never answering) and then closed.
        let raw = try RawConnection(port: server.port)
        raw.send(RawConnection.preface + RawConnection.frame(type: 4, flags: 0, stream: 0, []))
        #expect(await offThePool { raw.readFrames { type, _, _, _ in type == 6 } }, "the silent peer got no PING")
        #expect(await raw.readsUntilClosed(), "the server kept a peer that answers no PING")
        #expect(await ServerBehaviourTests.waitUntil { server.connectionCount == 1 })
        // Our idle channel answered every PING and is still connected.
        #expect(server.connectionCount == 1)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[2][...]]) == [2])
        #expect(server.connectionCount == 1)
        raw.close()
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func connectionLimitClosesExtraConnections() async throws {
        let server = try ServerBehaviourTests.server(Probe()) { $0.maxConnections = 2 }
        let a = try TestSupport.channel(port: server.port, tls: false)
        let b = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await a.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]]) == [1])
        #expect(try await b.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]]) == [1])
        let c = try TestSupport.channel(port: server.port, tls: false)
        do {
            _ = try await c.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]], timeout: .seconds(5))
            Issue.record("third connection served despite maxConnections = 2")
        } catch {
            #expect(error.code == .unavailable, "\(error)")
        }
        #expect(server.connectionCount == 2)
        for ch in [a, b, c] { ch.close() }
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func servesIPv6Loopback() async throws {
        var config = GRPCServerConfiguration(host: "::1", port: 0)
        config.eventLoopCount = 1
        let server = try GRPCServer(configuration: config, router: ServerBehaviourTests.router(Probe()))
        let channel = try GRPCChannel(configuration: GRPCClientConfiguration(host: "::1", port: server.port))
        #expect(
            try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[6][...]], timeout: .seconds(5)) == [
                6
            ])
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func clientKeepaliveFailsCallsToASilentServer() async throws {
        // A listener that never accepts: TCP connects, HTTP/2 never answers.
        let (fd, port) = try RawConnection.listen()
        defer { Glibc.close(fd) }
        var config = GRPCClientConfiguration(host: "127.0.0.1", port: port)
        config.keepaliveInterval = .milliseconds(100)
        config.keepaliveTimeout = .milliseconds(300)
        let channel = try GRPCChannel(configuration: config)
        let start = ContinuousClock.now
        do {
            _ = try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]])
            Issue.record("call to a silent server succeeded")
        } catch {
            #expect(error.code == .unavailable, "\(error)")
        }
        #expect(ContinuousClock.now - start < .seconds(20), "keepalive did not end the call (it has no deadline)")
        channel.close()
    }

    @Test func clientRejectsOversizedResponses() async throws {
        let server = try ServerBehaviourTests.server(Probe())
        var config = GRPCClientConfiguration(host: "127.0.0.1", port: server.port)
        config.maxReceiveMessageSize = 1000
        let channel = try GRPCChannel(configuration: config)
        #expect(
            try await channel.unary(
                path: ServerBehaviourTests.echoPath, request: [[UInt8](repeating: 1, count: 1000)[...]]
            ).count == 1000)
        do {
            _ = try await channel.unary(
                path: ServerBehaviourTests.echoPath, request: [[UInt8](repeating: 1, count: 1001)[...]],
                timeout: .seconds(5))
            Issue.record("oversized response accepted")
        } catch {
            #expect(error.code == .resourceExhausted, "\(error)")
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func garbageOnTheTLSPortClosesOnlyThatConnection() async throws {
        let server = try TestSupport.startServer(tls: true)
        let raw = try RawConnection(port: server.port)
        raw.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(await raw.readsUntilClosed())
        raw.close()
        let channel = try TestSupport.channel(port: server.port, tls: true)
        #expect(
            try await channel.unary(path: "/grpc.testing.TestService/EmptyCall", request: [], timeout: .seconds(10))
                .isEmpty)
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
