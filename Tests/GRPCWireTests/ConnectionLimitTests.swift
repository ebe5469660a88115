import Foundation
import Synchronization
import Testing

@testable import GRPCWire

/// Connection caps, handshake and idle timeouts: no client can lock the others out.
@Suite(.serialized) struct ConnectionLimitTests {
    /// A raw TCP connection that sends nothing (the lock-out attack: no preface, no TLS handshake).
    static func silent(_ port: Int, count: Int) throws -> [RawConnection] {
        try (0..<count).map { _ in try RawConnection(port: port) }
    }

    /// Reads the refusal of a connection over a cap: SETTINGS, then GOAWAY(ENHANCE_YOUR_CALM), then EOF.
    static func expectPoliteRefusal(_ raw: RawConnection, sourceLocation: SourceLocation = #_sourceLocation) async {
        var goawayCode: UInt32?
        _ = raw.readFrames { type, _, _, payload in
            if type == 0x7, payload.count >= 8 {
                goawayCode = UInt32(payload[4]) << 24 | UInt32(payload[5]) << 16 | UInt32(payload[6]) << 8
                    | UInt32(payload[7])
                return true
            }
            return false
        }
        #expect(goawayCode == 0xB, "GOAWAY(ENHANCE_YOUR_CALM) before closing", sourceLocation: sourceLocation)
        #expect(await raw.readsUntilClosed(), "then the connection is closed", sourceLocation: sourceLocation)
    }

    /// The defect: 4,200 idle TCP connections made every legitimate client fail UNAVAILABLE.
    @Test func thousandsOfIdleConnectionsDoNotLockOutAClient() async throws {
        // The handshake timeout is long here: the attack is that many connections held open within it.
        let server = try ServerBehaviourTests.server(Probe()) { $0.handshakeTimeout = .seconds(120) }
        let idle = try Self.silent(server.port, count: 5000)
        defer { for c in idle { c.close() } }
        #expect(await ServerBehaviourTests.waitUntil(.seconds(30)) { server.connectionCount >= 5000 })
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]]) == [1])
        #expect(server.connectionCapCounts.refused == 0, "the default caps admit at least 5,000 connections")
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func atTheCapTheOldestHandshakingConnectionMakesRoom() async throws {
        let server = try ServerBehaviourTests.server(Probe()) { $0.maxConnections = 20 }
        let idle = try Self.silent(server.port, count: 20)
        defer { for c in idle { c.close() } }
        #expect(await ServerBehaviourTests.waitUntil { server.connectionCount == 20 })
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[2][...]]) == [2])
        #expect(server.connectionCapCounts.evicted >= 1, "a silent connection was closed to make room")
        #expect(server.connectionCount <= 20)
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test(arguments: [false, true])
    func overTheCapTheNewestIsRefusedPolitelyAndTheOthersAreServed(perPeer: Bool) async throws {
        let server = try ServerBehaviourTests.server(Probe()) { c in
            if perPeer { c.maxConnectionsPerPeer = 3 } else { c.maxConnections = 3 }
        }
        let channels = try (0..<3).map { _ in try TestSupport.channel(port: server.port, tls: false) }
        for c in channels {
            #expect(try await c.unary(path: ServerBehaviourTests.echoPath, request: [[3][...]]) == [3])
        }
        let extra = try RawConnection(port: server.port)
        await Self.expectPoliteRefusal(extra)
        extra.close()
        #expect(server.connectionCapCounts.refused == 1)
        for c in channels {
            #expect(try await c.unary(path: ServerBehaviourTests.echoPath, request: [[4][...]]) == [4])
        }
        for c in channels { c.close() }
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func connectionsWithoutPrefaceAreClosedAfterTheHandshakeTimeout() async throws {
        let server = try ServerBehaviourTests.server(Probe()) { $0.handshakeTimeout = .milliseconds(300) }
        let idle = try Self.silent(server.port, count: 50)
        for c in idle { #expect(await c.readsUntilClosed()) }
        for c in idle { c.close() }
        #expect(await ServerBehaviourTests.waitUntil { server.connectionCount == 0 })
        // A client that sends its preface in time is served.
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[5][...]]) == [5])
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func idleConnectionsGetGoawayAndAreClosed() async throws {
        let server = try ServerBehaviourTests.server(Probe()) { $0.idleTimeout = .milliseconds(300) }
        let raw = try RawConnection(port: server.port)
        raw.handshake()
        var code: UInt32?
        let sawGoaway = raw.readFrames { type, _, _, payload in
            guard type == 0x7, payload.count >= 8 else { return false }
            code = UInt32(payload[7])
            return true
        }
        #expect(sawGoaway && code == 0, "GOAWAY(NO_ERROR) after the idle timeout")
        #expect(await raw.readsUntilClosed())
        raw.close()
        #expect(await ServerBehaviourTests.waitUntil { server.connectionCount == 0 })
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// A channel whose connection was closed for idleness reconnects for its next call.
    @Test func channelsReconnectAfterTheIdleTimeout() async throws {
        let server = try ServerBehaviourTests.server(Probe()) { $0.idleTimeout = .milliseconds(200) }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[6][...]]) == [6])
        #expect(await ServerBehaviourTests.waitUntil { server.connectionCount == 0 }, "closed when idle")
        #expect(try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[7][...]]) == [7])
        channel.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    /// A server needs a descriptor per connection: it raises the soft RLIMIT_NOFILE to the hard limit at start.
    @Test func startRaisesTheSoftDescriptorLimit() async throws {
        var limit = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        let hard = limit.rlim_max
        guard hard > 1 else { return }
        // Just below the hard limit: other suites of this process keep their descriptors meanwhile.
        limit.rlim_cur = hard - 1
        #expect(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        let server = try ServerBehaviourTests.server(Probe())
        var after = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &after) == 0)
        #expect(after.rlim_cur == hard)
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
