import Glibc
import Synchronization
import Testing

@testable import IOLoop

/// Name resolution runs off the calling thread (loop threads must not block in getaddrinfo).
@Suite struct ResolverTests {
    @Test func literalsNeedNoResolverAndNamesResolveOnAThreadOfTheirOwn() async throws {
        let literal = try await SocketAddress.resolve(host: "127.0.0.1", port: 80)
        #expect(literal == [SocketAddress.numeric("127.0.0.1", port: 80)].compactMap { $0 })
        let caller = UInt(pthread_self())
        let result: (Result<[SocketAddress], IOLoopError>, UInt) = await withCheckedContinuation { continuation in
            SocketAddress.resolve(host: "localhost", port: 6379) { result in
                continuation.resume(returning: (result, UInt(pthread_self())))
            }
        }
        #expect(result.1 != caller, "the completion runs on the resolver's thread")
        let addresses = try result.0.get()
        #expect(!addresses.isEmpty)
        #expect(addresses.allSatisfy { $0.family == AF_INET || $0.family == AF_INET6 })
    }

    @Test func anUnknownNameIsAClearError() async {
        await #expect {
            _ = try await SocketAddress.resolve(host: "no-such-host.invalid", port: 1)
        } throws: { error in
            guard let error = error as? IOLoopError, case .invalidAddress(let text, let reason) = error else {
                return false
            }
            return text == "no-such-host.invalid:1" && !reason.isEmpty
        }
    }

    @Test func unixPathsLongerThanSunPathAreRejected() {
        #expect(throws: IOLoopError.self) { _ = try SocketAddress.unix(path: String(repeating: "x", count: 200)) }
        #expect((try? SocketAddress.unix(path: "/tmp/valkey.sock"))?.family == AF_UNIX)
    }
}
