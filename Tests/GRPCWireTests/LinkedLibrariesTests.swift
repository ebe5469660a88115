import GRPCWire
import Testing

@Suite struct LinkedLibrariesTests {
    @Test func nghttp2IsDebianBookwormOrNewer() throws {
        let parts = LinkedLibraries.nghttp2Version.split(separator: ".").compactMap { Int($0) }
        #expect(parts.count == 3)
        #expect(parts.lexicographicallyPrecedes([1, 52, 0]) == false)
    }

    @Test func openSSLIsVersion3() {
        #expect(LinkedLibraries.openSSLVersion.hasPrefix("OpenSSL 3."))
    }
}
