import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `flight` and `all` re-execute themselves once with one glibc malloc arena (docs/DEPLOYMENT.md, "Store memory
/// under churn"), keep their pid, and leave an operator's own `glibc.malloc.arena_max` alone.
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
            #expect(environment.contains("VALKEYFLIGHT_ONE_MALLOC_ARENA=1"))
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
        #expect(!environment.contains("VALKEYFLIGHT_ONE_MALLOC_ARENA=1"), "not re-executed")
    }
}
