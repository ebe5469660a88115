import Glibc
import Testing

@testable import IOLoop

/// Peer addresses key the per-peer connection cap.
@Suite struct PeerAddressTests {
    @Test func peerAddressesIgnoreThePortAndUnmapIPv4() {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = 1234
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var b = a
        b.sin_port = 999
        var sa = sockaddr_storage()
        var sb = sockaddr_storage()
        withUnsafeMutableBytes(of: &sa) { dst in withUnsafeBytes(of: a) { dst.copyMemory(from: $0) } }
        withUnsafeMutableBytes(of: &sb) { dst in withUnsafeBytes(of: b) { dst.copyMemory(from: $0) } }
        #expect(PeerAddress(sa) == PeerAddress(sb))
        #expect(PeerAddress(sa).bytes == [127, 0, 0, 1])
        var m = sockaddr_in6()
        m.sin6_family = sa_family_t(AF_INET6)
        withUnsafeMutableBytes(of: &m.sin6_addr) { p in
            for i in 0..<16 { p[i] = 0 }
            p[10] = 0xFF
            p[11] = 0xFF
            p[12] = 127
            p[15] = 1
        }
        var sm = sockaddr_storage()
        withUnsafeMutableBytes(of: &sm) { dst in withUnsafeBytes(of: m) { dst.copyMemory(from: $0) } }
        #expect(PeerAddress(sm) == PeerAddress(sa), "::ffff:127.0.0.1 is the same peer as 127.0.0.1")
    }
}
