import Testing

@testable import RESP

private func bulk(_ s: String) -> RESPValue { .bulkString(Array(s.utf8)) }

/// Parsing of redirections and topology replies (the fallback CLUSTER SLOTS path has no server to run against:
/// both test servers answer CLUSTER SHARDS).
@Suite struct RESPClusterRoutingTests {
    @Test func redirectTargetsSplitOnTheLastColon() {
        let here = RESPEndpoint.tcp(host: "10.0.0.1", port: 7000)
        func target(_ code: String, _ message: String) -> RESPEndpoint? {
            RESPClusterClient.redirectTarget(.server(code: code, message: message, command: "GET"), from: here)
        }
        #expect(target("MOVED", "3999 127.0.0.1:6381") == .tcp(host: "127.0.0.1", port: 6381))
        #expect(target("ASK", "3999 ::1:7002") == .tcp(host: "::1", port: 7002))
        #expect(target("MOVED", "3999 :7003") == .tcp(host: "10.0.0.1", port: 7003))
        #expect(target("MOVED", "3999 host-without-port") == nil)
        #expect(RESPClusterClient.redirectTarget(.clientClosed, from: here) == nil)
    }

    @Test func clusterSlotsFallbackBuildsTheSlotMap() throws {
        let reply = RESPValue.array([
            .array([
                .integer(0), .integer(5460), .array([bulk("127.0.0.1"), .integer(7000), bulk("id0")]),
                .array([bulk("127.0.0.1"), .integer(7003), bulk("id3")]),
            ]),
            .array([.integer(5461), .integer(16383), .array([bulk(""), .integer(7001), bulk("id1")])]),
        ])
        let topology = try RESPClusterClient.parseSlots(reply, queried: .tcp(host: "192.168.1.5", port: 7000))
        #expect(topology.primaries == [.tcp(host: "127.0.0.1", port: 7000), .tcp(host: "192.168.1.5", port: 7001)])
        #expect(topology.slots[0] == 0 && topology.slots[5460] == 0)
        #expect(topology.slots[5461] == 1 && topology.slots[16383] == 1)
        #expect(throws: RESPError.self) {
            _ = try RESPClusterClient.parseSlots(
                .array([.array([.integer(0), .integer(99_999), .array([])])]), queried: .tcp(host: "h", port: 1))
        }
    }

    @Test func clusterShardsUsesTheOnlinePrimaryAndSkipsUnassignedSlots() throws {
        func node(_ endpoint: RESPValue, _ port: Int64, _ role: String, _ health: String) -> RESPValue {
            .map([
                RESPPair(key: bulk("endpoint"), value: endpoint), RESPPair(key: bulk("ip"), value: bulk("10.1.1.1")),
                RESPPair(key: bulk("port"), value: .integer(port)), RESPPair(key: bulk("role"), value: bulk(role)),
                RESPPair(key: bulk("health"), value: bulk(health)),
            ])
        }
        let reply = RESPValue.array([
            .map([
                RESPPair(key: bulk("slots"), value: .array([.integer(0), .integer(99), .integer(200), .integer(299)])),
                RESPPair(
                    key: bulk("nodes"),
                    value: .array([
                        node(bulk("a.example"), 7000, "master", "fail"), node(bulk("?"), 7001, "master", "online"),
                        node(bulk("b.example"), 7002, "replica", "online"),
                    ])),
            ])
        ])
        let topology = try RESPClusterClient.parseShards(reply, queried: .tcp(host: "seed", port: 1))
        #expect(topology.primaries == [.tcp(host: "10.1.1.1", port: 7001)])
        #expect(topology.slots[0] == 0 && topology.slots[99] == 0 && topology.slots[250] == 0)
        #expect(topology.slots[100] == -1 && topology.slots[300] == -1)
    }
}
