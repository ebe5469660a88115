import FlightRPC
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `flight` and `all` re-execute themselves once with one glibc malloc arena (docs/DEPLOYMENT.md, "Store memory
/// under churn"), keep their pid, give their children the environment back as it was, and leave an operator's own
/// `glibc.malloc.arena_max` alone.
@Suite(.timeLimit(.minutes(2)))
struct MallocArenaTests {
    /// The environment the process started with (after any re-execution), from /proc.
    static func environment(of pid: Int32) throws -> [String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func flightRunsWithOneArenaUnderItsOwnPid() async throws {
        try await FlightServerProcess.with { server in
            // The pid spawned is the one serving: the re-execution replaced the image, not the process.
            let environment = try Self.environment(of: server.child.pid)
            #expect(environment.contains("GLIBC_TUNABLES=glibc.malloc.arena_max=1"), "\(environment)")
            #expect(environment.contains("VALKEYFLIGHT_ONE_MALLOC_ARENA=unset"))
            let facts = try await PyArrow.run(["rpcs", server.url])
            #expect(facts["get_rows"] == 2500, "the re-executed server serves")
        }
    }

    @Test func anOperatorsArenaSettingIsKept() async throws {
        let child = try TestChildProcess(
            CLI.binary, ["flight", "--listen", "127.0.0.1:0"],
            environment: ["GLIBC_TUNABLES": "glibc.malloc.arena_max=2"])
        defer { child.terminate() }
        let line = await child.nextLine(within: 20)
        #expect(line?.hasPrefix("listening on grpc://") == true, "stderr: \(child.stderr)")
        let environment = try Self.environment(of: child.pid)
        #expect(environment.contains("GLIBC_TUNABLES=glibc.malloc.arena_max=2"))
        #expect(!environment.contains { $0.hasPrefix("VALKEYFLIGHT_ONE_MALLOC_ARENA=") }, "not re-executed")
    }

    @Test func childrenOfAllInheritTheEnvironmentAsItWas() async throws {
        let dump = NSTemporaryDirectory() + "vf-arena-env-\(UUID().uuidString)"
        defer { unlink(dump) }
        let all = try await ModeProcess.start("all", ["--queue", "arena", "--exec", "env > '\(dump)'; exec cat"])
        let location = try #require(all.location)
        let view = InProcessNodeView(client: try PipelineCrashTests.client(location), location: location)
        defer { view.client.close() }
        #expect(try Self.environment(of: all.child.pid).contains("GLIBC_TUNABLES=glibc.malloc.arena_max=1"))
        let key = try #require(try await view.submit(try PipelineData.stream(rows: 10), queue: "arena")["key"].string)
        let finished = try await view.waitFinished(key)
        #expect(finished["status"] == "completed", "\(finished)")
        let inherited = try String(contentsOfFile: dump, encoding: .utf8).split(separator: "\n").map(String.init)
        let own = ProcessInfo.processInfo.environment["GLIBC_TUNABLES"]
        #expect(inherited.filter { $0.hasPrefix("GLIBC_TUNABLES=") } == (own.map { ["GLIBC_TUNABLES=" + $0] } ?? []))
        #expect(!inherited.contains { $0.hasPrefix("VALKEYFLIGHT_ONE_MALLOC_ARENA=") })
        #expect(await all.stop() == 0)
    }
}
