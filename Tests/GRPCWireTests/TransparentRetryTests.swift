import Foundation
import GRPCWire
import Synchronization
import Testing

/// A hand-built HTTP/2 server that refuses every stream with RST_STREAM(REFUSED_STREAM): the server side of a
/// connection that is closing as a call goes out. It counts the streams it refused.
final class RefusingServer: Sendable {
    let port: Int
    private let listener: Int32
    let refusedStreams = Atomic<Int>(0)

    init() throws {
        (self.listener, self.port) = try RawConnection.listen()
    }

    /// Serves connections on a thread of its own until `stop()`; each gets the server preface and, for each
    /// HEADERS frame, RST_STREAM(REFUSED_STREAM) on that stream.
    func start() {
        let thread = Thread { [self] in
            while true {
                let connection = accept(self.listener, nil, nil)
                guard connection >= 0 else { return }
                Thread { self.refuseStreams(on: connection) }.start()
            }
        }
        thread.start()
    }

    func stop() {
        shutdown(self.listener, Int32(SHUT_RDWR))
        close(self.listener)
    }

    private func refuseStreams(on fd: Int32) {
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        RawConnection.sendAll(fd, RawConnection.frame(type: 4, flags: 0, stream: 0, []))
        var pending: [UInt8] = []
        var prefaceSeen = false
        var chunk = [UInt8](repeating: 0, count: 16384)
        for _ in 0..<1000 {
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { return }
            pending += chunk[0..<n]
            if !prefaceSeen {
                guard pending.count >= RawConnection.preface.count else { continue }
                pending.removeFirst(RawConnection.preface.count)
                prefaceSeen = true
            }
            while pending.count >= 9 {
                let length = Int(pending[0]) << 16 | Int(pending[1]) << 8 | Int(pending[2])
                guard pending.count >= 9 + length else { break }
                let type = pending[3]
                let flags = pending[4]
                let stream = UInt32(pending[5] & 0x7F) << 24 | UInt32(pending[6]) << 16 | UInt32(pending[7]) << 8
                    | UInt32(pending[8])
                pending.removeFirst(9 + length)
                if type == 4 && flags & 1 == 0 {  // SETTINGS: acknowledge
                    RawConnection.sendAll(fd, RawConnection.frame(type: 4, flags: 1, stream: 0, []))
                } else if type == 1 {  // HEADERS: refuse the stream
                    self.refusedStreams.add(1, ordering: .relaxed)
                    RawConnection.sendAll(fd, RawConnection.frame(type: 3, flags: 0, stream: stream, [0, 0, 0, 7]))
                }
            }
        }
    }
}

extension RawConnection {
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}

@Suite struct TransparentRetryTests {
    /// A unary call refused unprocessed is sent once more, and only once: a server that refuses every stream
    /// sees two streams and the caller gets UNAVAILABLE naming REFUSED_STREAM.
    @Test func aRefusedUnaryCallIsRetriedOnce() async throws {
        let server = try RefusingServer()
        server.start()
        defer { server.stop() }
        let channel = try TestSupport.channel(port: server.port, tls: false)
        defer { channel.close() }
        await #expect(throws: GRPCStatus.refusedStream) {
            _ = try await channel.unary(path: ServerBehaviourTests.echoPath, request: [[1][...]], timeout: .seconds(20))
        }
        #expect(server.refusedStreams.load(ordering: .relaxed) == 2)
    }
}
