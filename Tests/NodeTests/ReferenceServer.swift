import Foundation
import Glibc
import Synchronization
import TestProcessSupport
import Testing

/// The pyarrow `FlightServerBase` reference server (`Tests/Fixtures/Flight/reference_server.py`) as a child
/// process on a free loopback port. The Python is `VALKEYFLIGHT_PYTHON`, else `<package root>/.venv/bin/python`.
///
/// A ``SpawnedProcess`` (posix_spawn, a process group of its own, pipes read on threads of its own): every wait
/// is suspended, never on a thread of the cooperative pool, and ``stop(keepLog:)`` always reaps it.
final class ReferenceServer: Sendable {
    /// `grpc://127.0.0.1:PORT` or `grpc+tls://127.0.0.1:PORT`.
    let url: String
    let pid: pid_t
    private let process: SpawnedProcess

    /// The server's stderr so far (Python tracebacks), for failure messages.
    var log: String { self.process.stderrText }

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

    private init(url: String, process: SpawnedProcess) {
        self.url = url
        self.pid = process.pid
        self.process = process
    }

    /// Starts the server (`arguments`: `--auth USER:PASS`, `--tls CERT KEY`) and waits up to `timeout` for its
    /// "listening on" line.
    static func start(_ arguments: [String] = [], timeout: Duration = .seconds(30)) async throws -> ReferenceServer {
        let process: SpawnedProcess
        do {
            process = try SpawnedProcess.spawn(
                ChildCommand(self.python, [self.script] + arguments, stdin: .discard, stdout: .pipe, stderr: .pipe))
        } catch {
            throw StartFailure(description: "cannot run \(self.python): \(error) (set VALKEYFLIGHT_PYTHON)")
        }
        let line = await process.nextLine(within: timeout) ?? ""
        guard line.hasPrefix("listening on ") else {
            await process.kill()
            throw StartFailure(
                description: "the reference server did not start (first line: '\(line)'): \(process.stderrText.suffix(2000))")
        }
        return ReferenceServer(url: String(line.dropFirst("listening on ".count)), process: process)
    }

    /// Stops the server: SIGTERM, then SIGKILL to its group after 20 s; reaps it.
    ///
    /// - Returns: whether it exited on SIGTERM (gRPC's shutdown waits for open calls, so false means a call
    ///   was left open).
    @discardableResult
    func stop(keepLog: Bool = false) async -> Bool {
        self.process.send(SIGTERM)
        // 20 s: a call left open keeps it up forever; a loaded machine is slow.
        let exited = await self.process.waitForExit(within: .seconds(20))
        if !exited { await self.process.kill() }
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
