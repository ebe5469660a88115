import GRPCInteropService
import GRPCWire
import Glibc
import Synchronization

/// `grpcwire-bench [--python PATH] [--seconds S] [--ours-only]`: unary calls/s and server-streaming MB/s (64 KiB and 4 MiB
/// messages) for our server and client beside grpcio's, all on loopback in one run.
///
/// Pairs measured: our client → our server, our client → grpcio server, grpcio client → our server,
/// grpcio client → grpcio server. grpcio peers come from `scripts/grpc-bench-peer.py`.
@main
struct BenchmarkMain {
    static func now() -> ContinuousClock.Instant { ContinuousClock.now }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func say(_ text: String) {
        let line = text + "\n"
        _ = line.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
    }

    /// Unary EmptyCall from `concurrency` tasks over one channel for `duration`.
    static func unary(port: Int, concurrency: Int, duration: Duration) async throws -> Double {
        let channel = try GRPCChannel(configuration: GRPCClientConfiguration(host: "127.0.0.1", port: port))
        defer { channel.close() }
        _ = try await channel.unary(path: InteropTestService.emptyCall, request: [])
        let count = Counter()
        let start = Self.now()
        let end = start.advanced(by: duration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while Self.now() < end {
                        _ = try await channel.unary(path: InteropTestService.emptyCall, request: [])
                        count.value.add(1, ordering: .relaxed)
                    }
                }
            }
            try await group.waitForAll()
        }
        return Double(count.value.load(ordering: .relaxed)) / Self.seconds(Self.now() - start)
    }

    /// One server-streaming call of `count` messages of `size` bytes; returns MB/s (10^6 bytes) of payload.
    static func stream(port: Int, size: Int, count: Int) async throws -> Double {
        let channel = try GRPCChannel(configuration: GRPCClientConfiguration(host: "127.0.0.1", port: port))
        defer { channel.close() }
        let request = StreamingOutputCallRequest(
            responseParameters: Array(repeating: ResponseParameters(size: Int32(size)), count: count)
        ).encode()
        let start = Self.now()
        let call = channel.makeCall(path: InteropTestService.streamingOutputCall)
        try await call.send(request)
        call.finishSending()
        var bytes = 0
        while let m = try await call.receive() { bytes += m.count }
        let elapsed = Self.seconds(Self.now() - start)
        guard bytes >= size * count else { throw GRPCStatus(.dataLoss, "received \(bytes) bytes") }
        return Double(bytes) / elapsed / 1e6
    }

    /// Runs the grpcio peer script and returns its stdout.
    static func python(_ python: String, _ args: [String]) -> String {
        Self.shell(([python] + args).map { "'\($0)'" }.joined(separator: " "))
    }

    /// Runs a shell command and returns its stdout.
    static func shell(_ command: String) -> String {
        guard let pipe = popen(command, "r") else { return "" }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, pipe)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        pclose(pipe)
        return String(decoding: out, as: UTF8.self)
    }

    /// Starts `grpc-bench-peer.py server` in the background; returns its port and pid.
    static func startPythonServer(_ python: String, script: String) -> (port: Int, pid: Int32)? {
        let file = "/tmp/grpcwire-bench-server.\(getpid())"
        let output = Self.shell("'\(python)' '\(script)' server > \(file) 2>&1 & echo $!")
        guard let pid = Int32(output.trimmed) else { return nil }
        for _ in 0..<300 {
            usleep(50_000)
            if let f = fopen(file, "r") {
                var line = [CChar](repeating: 0, count: 256)
                let got = fgets(&line, 256, f) != nil
                fclose(f)
                if got {
                    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    if text.hasPrefix("PORT "), let port = Int(text.dropFirst(5).filter(\.isNumber)) {
                        unlink(file)
                        return (port, pid)
                    }
                }
            }
        }
        return nil
    }

    static func main() async throws {
        var args = CommandLine.arguments.dropFirst()
        var python = ".venv/bin/python"
        var seconds = 3
        var oursOnly = false
        while let a = args.popFirst() {
            switch a {
            case "--ours-only": oursOnly = true
            case "--python": python = args.popFirst() ?? python
            case "--seconds": seconds = Int(args.popFirst() ?? "") ?? seconds
            default: break
            }
        }
        let script = "scripts/grpc-bench-peer.py"
        let duration = Duration.seconds(seconds)

        var config = GRPCServerConfiguration(host: "127.0.0.1", port: 0)
        config.eventLoopCount = 1
        let ours = try GRPCServer(configuration: config, router: InteropTestService.router())
        if oursOnly {
            // Our pair only (no Python), e.g. for profiling.
            let rate = try await Self.unary(port: ours.port, concurrency: 32, duration: duration)
            Self.say("unary EmptyCall, 32 in flight, ours → ours: \(Int(rate)) calls/s")
            for (size, count) in [(64 << 10, 32768), (4 << 20, 512)] {
                let mbps = try await Self.stream(port: ours.port, size: size, count: count)
                Self.say("server-streaming \(size >> 10) KiB messages, ours → ours: \(Int(mbps)) MB/s")
            }
            await ours.shutdown(gracePeriod: .seconds(1))
            return
        }
        guard let peer = Self.startPythonServer(python, script: script) else {
            Self.say("could not start the grpcio server (\(python) \(script))")
            return
        }
        defer { kill(peer.pid, SIGTERM) }
        Self.say("GRPCWire benchmark, loopback, \(seconds) s per unary figure; ours: 1 server loop thread")
        Self.say("")
        Self.say("| measure | client → server | result |")
        Self.say("|---|---|---|")
        for (label, port) in [("ours → ours", ours.port), ("ours → grpcio", peer.port)] {
            let rate = try await Self.unary(port: port, concurrency: 32, duration: duration)
            Self.say("| unary EmptyCall, 32 in flight | \(label) | \(Int(rate)) calls/s |")
        }
        for (label, port) in [("grpcio → ours", ours.port), ("grpcio → grpcio", peer.port)] {
            let out = Self.python(python, [script, "unary", String(port), String(seconds), "32"])
            Self.say("| unary EmptyCall, 32 in flight | \(label) | \(out.trimmed) calls/s |")
        }
        for (size, count) in [(64 << 10, 32768), (4 << 20, 512)] {
            let name = size == 64 << 10 ? "64 KiB" : "4 MiB"
            for (label, port) in [("ours → ours", ours.port), ("ours → grpcio", peer.port)] {
                let mbps = try await Self.stream(
                    port: port, size: size, count: label == "ours → grpcio" ? count / 4 : count)
                Self.say("| server-streaming \(name) messages | \(label) | \(Int(mbps)) MB/s |")
            }
            for (label, port) in [("grpcio → ours", ours.port), ("grpcio → grpcio", peer.port)] {
                let out = Self.python(python, [script, "stream", String(port), String(size), String(count / 4)])
                Self.say("| server-streaming \(name) messages | \(label) | \(out.trimmed) MB/s |")
            }
        }
        await ours.shutdown(gracePeriod: .seconds(1))
    }
}

extension String {
    /// The string without leading and trailing whitespace.
    var trimmed: String {
        String(self.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}

/// A shared call counter.
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
