import Foundation
import GRPCInteropService
import GRPCWire
import Synchronization
import Testing

/// Records what handlers observed, for assertions from the test.
final class Probe: Sendable {
    let started = Atomic<Int>(0)
    let cancelled = Atomic<Int>(0)
    let sent = Atomic<Int>(0)
    let active = Atomic<Int>(0)
    let maxActive = Atomic<Int>(0)
}

/// Server semantics beyond the interop cases: limits, encodings, deadlines, cancellation, shutdown, reconnect.
@Suite(.serialized) struct ServerBehaviourTests {
    static let sleepPath = "/test.Probe/Sleep"
    static let floodPath = "/test.Probe/Flood"
    static let echoPath = "/test.Probe/Echo"
    static let holdPath = "/test.Probe/Hold"
    static let earlyFailPath = "/test.Probe/EarlyFail"
    static let throwPath = "/test.Probe/Throw"

    static func router(_ probe: Probe) -> GRPCRouter {
        var router = InteropTestService.router()
        router.unary(Self.echoPath) { _, request in [request[...]] }
        router.unary(Self.sleepPath) { _, _ in
            probe.started.add(1, ordering: .relaxed)
            do {
                try await Task.sleep(for: .seconds(30))
            } catch {
                probe.cancelled.add(1, ordering: .relaxed)
                throw error
            }
            return [[]]
        }
        // Echoes every message; counts concurrently active calls.
        router.bidirectional(Self.holdPath) { call in
            let now = probe.active.add(1, ordering: .relaxed).newValue
            _ = probe.maxActive.max(now, ordering: .relaxed)
            defer { probe.active.subtract(1, ordering: .relaxed) }
            for try await message in call.requests { try await call.send(message) }
        }
        router.unary(Self.throwPath) { _, _ in
            struct Oops: Error {}
            throw Oops()
        }
        // Fails after the first request while the client may still be sending.
        router.clientStreaming(Self.earlyFailPath) { call in
            _ = try await call.receive()
            throw GRPCStatus(.invalidArgument, "first request rejected")
        }
        // Sends `count` messages of 1 MiB (count = first request byte).
        router.serverStreaming(Self.floodPath) { call, request in
            let count = Int(request.first ?? 0)
            let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
            for _ in 0..<count {
                try await call.send(chunk)
                probe.sent.add(1, ordering: .relaxed)
            }
        }
        return router
    }

    static func server(_ probe: Probe, configure: (inout GRPCServerConfiguration) -> Void = { _ in }) throws
        -> GRPCServer
    {
        var config = GRPCServerConfiguration(host: "127.0.0.1", port: 0)
        config.eventLoopCount = 2
        configure(&config)
        return try GRPCServer(configuration: config, router: Self.router(probe))
    }

    /// Polls `condition` until it holds; false if it did not within `limit` (checked once more after the
    /// deadline, since a starved task may wake only then).
    static func waitUntil(_ limit: Duration = .seconds(30), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: limit)
        while !condition() {
            if ContinuousClock.now > deadline { return condition() }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// Waits until `progress` (a count a sender increases) stops changing for `quiet`, and returns where it
    /// stopped; nil if it kept changing for `limit`. A sender held back by flow control stops for good, so the
    /// caller then checks how far it got: without backpressure it would run to its end long before.
    static func waitUntilStalled(
        quiet: Duration = .milliseconds(400), limit: Duration = .seconds(30), _ progress: () -> Int
    ) async -> Int? {
        let deadline = ContinuousClock.now.advanced(by: limit)
        var last = progress()
        var since = ContinuousClock.now
        while ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
            let now = progress()
            if now != last {
                last = now
                since = ContinuousClock.now
            } else if ContinuousClock.now - since >= quiet {
                return now
            }
        }
        return nil
    }

    @Test func oversizedRequestIsResourceExhausted() async throws {
        let probe = Probe()
        let server = try Self.server(probe) { $0.maxReceiveMessageSize = 1024 }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let ok = try await channel.unary(path: Self.echoPath, request: [[UInt8](repeating: 1, count: 1024)[...]])
        #expect(ok.count == 1024)
        do {
            _ = try await channel.unary(
                path: Self.echoPath, request: [[UInt8](repeating: 1, count: 1025)[...]], timeout: .seconds(10))
            Issue.record("oversized request accepted")
        } catch {
            #expect(error.code == .resourceExhausted, "\(error)")
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func nonIdentityEncodingIsUnimplemented() async throws {
        let server = try Self.server(Probe())
        let channel = try TestSupport.channel(port: server.port, tls: false)
        var md = GRPCMetadata()
        md.add("grpc-encoding", "gzip")
        do {
            _ = try await channel.unary(path: Self.echoPath, request: [[1][...]], metadata: md, timeout: .seconds(10))
            Issue.record("gzip request accepted")
        } catch {
            #expect(error.code == .unimplemented)
            #expect(error.message.contains("gzip"))
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func deadlineCancelsTheHandler() async throws {
        let probe = Probe()
        let server = try Self.server(probe)
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let start = ContinuousClock.now
        do {
            _ = try await channel.unary(path: Self.sleepPath, request: [[]], timeout: .milliseconds(200))
            Issue.record("sleeping call succeeded")
        } catch {
            #expect(error.code == .deadlineExceeded)
        }
        #expect(ContinuousClock.now - start < .seconds(20), "not cut at its deadline (the handler sleeps 30 s)")
        #expect(await Self.waitUntil { probe.cancelled.load(ordering: .relaxed) == 1 })
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func clientCancellationResetsTheStreamAndCancelsTheHandler() async throws {
        let probe = Probe()
        let server = try Self.server(probe)
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let call = channel.makeCall(path: Self.sleepPath)
        try await call.send([[]])
        call.finishSending()
        #expect(await Self.waitUntil { probe.started.load(ordering: .relaxed) == 1 })
        call.cancel()
        #expect(await call.status().code == .cancelled)
        #expect(await Self.waitUntil(.seconds(5)) { probe.cancelled.load(ordering: .relaxed) == 1 })
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func gracefulShutdownLetsCallsFinishAndRefusesNewOnes() async throws {
        let probe = Probe()
        let server = try Self.server(probe)
        let channel = try TestSupport.channel(port: server.port, tls: false)
        // A server-streaming call with 4 responses 100 ms apart is in flight during shutdown.
        let call = channel.makeCall(path: InteropTestService.streamingOutputCall, timeout: .seconds(20))
        try await call.send(
            StreamingOutputCallRequest(
                responseParameters: (0..<4).map { _ in ResponseParameters(size: 10, intervalMicroseconds: 100_000) }
            )
            .encode())
        call.finishSending()
        _ = try await call.receive()
        let shutdown = Task { await server.shutdown(gracePeriod: .seconds(10)) }
        var count = 1
        while try await call.receive() != nil { count += 1 }
        #expect(count == 4)
        #expect(await call.status().code == .ok)
        await shutdown.value
        #expect(server.connectionCount == 0)
        do {
            _ = try await channel.unary(path: Self.echoPath, request: [[1][...]], timeout: .seconds(5))
            Issue.record("call after shutdown succeeded")
        } catch {
            #expect(error.code == .unavailable, "\(error)")
        }
        channel.close()
    }

    @Test func channelReconnectsAfterServerRestart() async throws {
        let probe = Probe()
        var server = try Self.server(probe)
        let port = server.port
        let channel = try TestSupport.channel(port: port, tls: false)
        #expect(try await channel.unary(path: Self.echoPath, request: [[7][...]]) == [7])
        await server.shutdown(gracePeriod: .milliseconds(100))
        // Server gone: calls fail fast with UNAVAILABLE instead of hanging.
        let start = ContinuousClock.now
        do {
            _ = try await channel.unary(path: Self.echoPath, request: [[7][...]], timeout: .seconds(20))
            Issue.record("call to a stopped server succeeded")
        } catch {
            #expect(error.code == .unavailable, "\(error)")
        }
        #expect(ContinuousClock.now - start < .seconds(15), "waited for the 20 s deadline instead of failing fast")
        server = try Self.server(probe) { $0.port = port }
        #expect(try await channel.unary(path: Self.echoPath, request: [[8][...]], timeout: .seconds(10)) == [8])
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func oversizedHeaderBlockIsRefused() async throws {
        let server = try Self.server(Probe()) { $0.maxHeaderListSize = 4096 }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        var md = GRPCMetadata()
        md.add("x-big", String(repeating: "a", count: 6000))
        do {
            _ = try await channel.unary(path: Self.echoPath, request: [[1][...]], metadata: md, timeout: .seconds(5))
            Issue.record("oversized header block accepted")
        } catch {
            #expect(error.code == .internal || error.code == .resourceExhausted, "\(error)")
        }
        // The connection keeps serving normal calls.
        #expect(try await channel.unary(path: Self.echoPath, request: [[2][...]], timeout: .seconds(5)) == [2])
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func nonGRPCContentTypeGetsHTTP415() async throws {
        let server = try Self.server(Probe())
        let channel = try TestSupport.channel(port: server.port, tls: false)
        var md = GRPCMetadata()
        md.add("content-type", "text/plain")  // sent after ours; the server reads the last one
        do {
            _ = try await channel.unary(path: Self.echoPath, request: [[1][...]], metadata: md, timeout: .seconds(5))
            Issue.record("text/plain request served")
        } catch {
            #expect(error.code == .unknown)
            #expect(error.message.contains("415"), "\(error)")
        }
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func earlyServerErrorEndsAClientThatKeepsSending() async throws {
        let server = try Self.server(Probe())
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let call = channel.makeCall(path: Self.earlyFailPath, timeout: .seconds(20))
        let chunk = [UInt8](repeating: 3, count: 1 << 20)
        var sendError: GRPCStatus?
        for _ in 0..<100 {
            do { try await call.send(chunk) } catch {
                sendError = error
                break
            }
        }
        let status = await call.status()
        #expect(status.code == .invalidArgument, "\(status)")
        #expect(status.message == "first request rejected")
        #expect(sendError == nil || sendError?.code == .invalidArgument)
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func nonStatusErrorsBecomeUnknown() async throws {
        let server = try Self.server(Probe())
        let channel = try TestSupport.channel(port: server.port, tls: false)
        do {
            _ = try await channel.unary(path: Self.throwPath, request: [[1][...]], timeout: .seconds(5))
            Issue.record("throwing handler succeeded")
        } catch {
            #expect(error.code == .unknown)
            #expect(error.message.contains("Oops"), "\(error)")
        }
        #expect(try await channel.unary(path: Self.echoPath, request: [[2][...]], timeout: .seconds(5)) == [2])
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func clientWindowOpensOnlyAsResponsesAreConsumed() async throws {
        let probe = Probe()
        let server = try Self.server(probe)
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let call = channel.makeCall(path: Self.floodPath, timeout: .seconds(30))
        try await call.send([[UInt8(100)][...]], last: true)
        // Not reading: the server can only get ahead by our window, our receive queue and its own buffers.
        #expect(await Self.waitUntil { probe.sent.load(ordering: .relaxed) > 0 })
        let stalled = await Self.waitUntilStalled { probe.sent.load(ordering: .relaxed) }
        #expect(stalled != nil, "the sender never stalled: \(probe.sent.load(ordering: .relaxed)) MiB sent")
        #expect((stalled ?? .max) < 48, "\(stalled ?? -1) MiB sent to a client that reads nothing")
        var received = 0
        while let m = try await call.receive() {
            #expect(m.count == 1 << 20)
            received += 1
        }
        #expect(received == 100)
        #expect(await call.status().code == .ok)
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func cancellingAWaitingTaskStopsItsReceive() async throws {
        let probe = Probe()
        let server = try Self.server(probe)
        let channel = try TestSupport.channel(port: server.port, tls: false)
        let call = channel.makeCall(path: Self.sleepPath, timeout: .seconds(30))
        try await call.send([[]], last: true)
        #expect(await Self.waitUntil { probe.started.load(ordering: .relaxed) == 1 })
        let waiter = Task { () async -> Result<[UInt8]?, GRPCStatus> in
            do throws(GRPCStatus) { return .success(try await call.receive()) } catch { return .failure(error) }
        }
        // The waiter may be cancelled before or after its receive started waiting: either way the receive must
        // end at once with CANCELLED.
        waiter.cancel()
        let start = ContinuousClock.now
        let result = await waiter.value
        #expect(ContinuousClock.now - start < .seconds(10), "a cancelled receive must not wait for the 30 s deadline")
        switch result {
        case .success: Issue.record("receive returned although its task was cancelled")
        case .failure(let status): #expect(status.code == .cancelled)
        }
        call.cancel()
        #expect(await Self.waitUntil { probe.cancelled.load(ordering: .relaxed) == 1 })
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func runServesUntilItsTaskIsCancelled() async throws {
        let server = try Self.server(Probe())
        let serving = Task { await server.run(gracePeriod: .seconds(1)) }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: Self.echoPath, request: [[4][...]], timeout: .seconds(5)) == [4])
        serving.cancel()
        await serving.value
        #expect(server.connectionCount == 0)
        do {
            _ = try await channel.unary(path: Self.echoPath, request: [[4][...]], timeout: .seconds(5))
            Issue.record("served after run() was cancelled")
        } catch {
            #expect(error.code == .unavailable)
        }
        channel.close()
    }
}
