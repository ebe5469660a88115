import Foundation
import Glibc
import Synchronization
import Testing

/// The pyarrow `FlightServerBase` reference server (`Tests/Fixtures/Flight/reference_server.py`) as a child
/// process on a free loopback port. The Python is `VALKEYFLIGHT_PYTHON`, else `<package root>/.venv/bin/python`.
///
/// Spawned with `posix_spawn` (so that the PID is ours to signal and reap); blocking reads and waits run on
/// threads of their own, never on the cooperative pool.
final class ReferenceServer: Sendable {
    /// `grpc://127.0.0.1:PORT` or `grpc+tls://127.0.0.1:PORT`.
    let url: String
    let pid: pid_t
    /// The server's stderr (Python tracebacks), for failure messages.
    let logPath: String

    /// The server of the enclosing suite (see ``ReferenceServerScope``).
    @TaskLocal static var shared: ReferenceServer?

    static let script = CLI.packageRoot.appendingPathComponent("Tests/Fixtures/Flight/reference_server.py").path

    static var python: String {
        if let python = ProcessInfo.processInfo.environment["VALKEYFLIGHT_PYTHON"], !python.isEmpty { return python }
        return CLI.packageRoot.appendingPathComponent(".venv/bin/python").path
    }

    struct StartFailure: Error, CustomStringConvertible {
        let description: String
    }

    private init(url: String, pid: pid_t, logPath: String) {
        self.url = url
        self.pid = pid
        self.logPath = logPath
    }

    /// Starts the server (`arguments`: `--auth USER:PASS`, `--tls CERT KEY`) and waits up to `timeout` for its
    /// "listening on" line.
    static func start(_ arguments: [String] = [], timeout: Duration = .seconds(30)) async throws -> ReferenceServer {
        let logPath = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vf-reference-\(UUID().uuidString).log"
        ).path
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw StartFailure(description: "pipe: \(String(cString: strerror(errno)))") }
        // Not inherited by other children (the CLI runs, other servers): their EOF must come when this one exits.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addclose(&actions, readEnd)
        posix_spawn_file_actions_addclose(&actions, writeEnd)
        // The child must not inherit the spawning thread's blocked signals (SIGTERM would never arrive).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        for signal in [SIGTERM, SIGINT, SIGPIPE] { sigaddset(&signals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = [self.python, self.script] + arguments
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, self.python, &actions, &attributes, &cArguments, environ)
        close(writeEnd)
        guard spawned == 0 else {
            close(readEnd)
            throw StartFailure(
                description:
                    "cannot run \(self.python): \(String(cString: strerror(spawned))) (set VALKEYFLIGHT_PYTHON)")
        }
        // Read the first line on a thread of its own; if it does not come in time, the child is killed, which
        // ends the read at EOF. The thread then keeps draining stdout until the server exits.
        let arrived = Mutex(false)
        let spawnedPID = pid
        Thread {
            Thread.sleep(forTimeInterval: Double(timeout.components.seconds))
            if !arrived.withLock({ $0 }) { kill(spawnedPID, SIGKILL) }
        }.start()
        let line: String = await withCheckedContinuation { continuation in
            Thread {
                var bytes: [UInt8] = []
                var byte: UInt8 = 0
                while read(readEnd, &byte, 1) == 1, byte != UInt8(ascii: "\n") { bytes.append(byte) }
                arrived.withLock { $0 = true }
                continuation.resume(returning: String(decoding: bytes, as: UTF8.self))
                var sink = [UInt8](repeating: 0, count: 4096)
                while read(readEnd, &sink, sink.count) > 0 {}
                close(readEnd)
            }.start()
        }
        let server = ReferenceServer(url: String(line.dropFirst("listening on ".count)), pid: pid, logPath: logPath)
        guard line.hasPrefix("listening on ") else {
            await server.stop(keepLog: true)
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(atPath: logPath)
            throw StartFailure(
                description: "the reference server did not start (first line: '\(line)'): \(log.suffix(2000))")
        }
        return server
    }

    /// Stops the server by its PID: SIGTERM, then SIGKILL after 20 s; reaps it.
    ///
    /// - Returns: whether it exited on SIGTERM (gRPC's shutdown waits for open calls, so false means a call
    ///   was left open).
    @discardableResult
    func stop(keepLog: Bool = false) async -> Bool {
        let pid = self.pid
        kill(pid, SIGTERM)
        let exited: Bool = await withCheckedContinuation { continuation in
            Thread {
                var status: Int32 = 0
                for _ in 0..<400 {  // 20 s: a call left open keeps it up forever; a loaded machine is slow
                    if waitpid(pid, &status, WNOHANG) != 0 { return continuation.resume(returning: true) }
                    usleep(50_000)
                }
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                continuation.resume(returning: false)
            }.start()
        }
        if !keepLog { try? FileManager.default.removeItem(atPath: self.logPath) }
        return exited
    }

    /// Runs `body` with a server started for it, stopping the server on every path. After a successful `body`
    /// the server must exit on SIGTERM: our client left no call open.
    static func with<T>(
        _ arguments: [String] = [], sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (ReferenceServer) async throws -> T
    ) async throws -> T {
        let server = try await ReferenceServer.start(arguments)
        do {
            let result = try await body(server)
            let clean = await server.stop()
            #expect(
                clean, "the reference server did not exit on SIGTERM within 20 s: a call was left open",
                sourceLocation: sourceLocation)
            return result
        } catch {
            await server.stop()
            throw error
        }
    }
}

/// A suite trait: one reference server for the whole suite, reachable as ``ReferenceServer/shared``.
struct ReferenceServerScope: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        try await ReferenceServer.with { server in
            try await ReferenceServer.$shared.withValue(server) { try await function() }
        }
    }
}

extension Trait where Self == ReferenceServerScope {
    /// Starts the pyarrow reference server once around the suite.
    static var referenceServer: Self { ReferenceServerScope() }
}
