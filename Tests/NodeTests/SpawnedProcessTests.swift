import Foundation
import Glibc
import TestProcessSupport
import Testing

/// The child-process helper every test uses (TestProcessSupport): output, input, exit, time limits, the process
/// group, descriptors, and waits that hold no thread of the cooperative pool.
@Suite struct SpawnedProcessTests {
    static func sh(_ script: String, stdin: ChildStream = .pipe) -> ChildCommand {
        ChildCommand("/bin/sh", ["-c", script], stdin: stdin)
    }

    @Test func runReturnsExitCodeStdoutAndStderrApart() async throws {
        let result = try await SpawnedProcess.run(Self.sh("printf out; printf err >&2; exit 3"), timeout: .seconds(30))
        #expect(result.exitCode == 3 && result.signal == nil && result.status == 3)
        #expect(result.stdoutText == "out")
        #expect(result.stderrText == "err")
        let merged = try SpawnedProcess.runBlocking(
            ChildCommand("/bin/sh", ["-c", "printf a; printf b >&2"], stderr: .stdout), timeout: .seconds(30))
        #expect(merged.exitCode == 0 && merged.stdoutText.sorted() == ["a", "b"] && merged.stderr.isEmpty)
    }

    @Test func environmentAndDirectoryReachTheChild() async throws {
        let command = ChildCommand("/bin/sh", ["-c", "printf '%s %s' \"$VF_SPAWN_TEST\" \"$(pwd)\""],
                                   environment: ["VF_SPAWN_TEST": "set"], directory: "/usr")
        #expect(try await SpawnedProcess.run(command, timeout: .seconds(30)).stdoutText == "set /usr")
        let bare = ChildCommand("/usr/bin/env", [], inheritEnvironment: false)
        #expect(try await SpawnedProcess.run(bare, timeout: .seconds(30)).stdoutText == "")
    }

    /// Megabytes through stdin and back at once: the I/O thread writes and reads together, so neither pipe
    /// fills up and blocks the other.
    @Test func megabytesThroughStdinAndStdout() async throws {
        let input = [UInt8](repeating: 0x5A, count: 8 << 20) + Array("end".utf8)
        let result = try await SpawnedProcess.run(ChildCommand("/bin/cat"), stdin: input, timeout: .seconds(60))
        #expect(result.exitCode == 0)
        #expect(result.stdout == input)
    }

    @Test func linesArriveWhileTheChildRuns() async throws {
        try await withChildProcess(Self.sh("echo one; read x; echo \"got $x\"; printf tail")) { child in
            #expect(await child.nextLine(within: .seconds(30)) == "one")
            child.write(Array("two\n".utf8))
            #expect(await child.nextLine(within: .seconds(30)) == "got two")
            // A last line without a newline is not a line; stdout ends, so the wait ends at once.
            #expect(await child.nextLine(within: .seconds(30)) == nil)
            #expect(await child.waitForExit(within: .seconds(30)))
            #expect(child.stdoutText.hasSuffix("tail"))
        }
    }

    @Test func aRunPastItsLimitIsKilledAndThrows() async throws {
        let started = ContinuousClock.now
        await #expect(throws: ChildProcessError.self) {
            _ = try await SpawnedProcess.run(Self.sh("echo started; exec sleep 100"), timeout: .milliseconds(300))
        }
        #expect(ContinuousClock.now - started < .seconds(20))
        #expect(throws: ChildProcessError.self) {
            _ = try SpawnedProcess.runBlocking(Self.sh("exec sleep 100"), timeout: .milliseconds(300))
        }
    }

    @Test func aMissingExecutableIsAnError() async throws {
        #expect(throws: ChildProcessError.self) { _ = try SpawnedProcess.spawn(ChildCommand("/nonexistent/binary")) }
        #expect(throws: ChildProcessError.self) { _ = try SpawnedProcess.spawn(ChildCommand("no-such-command-vf")) }
    }

    /// The scope kills the child's whole process group, so a grandchild it left running dies with it.
    @Test func theScopeKillsTheWholeGroup() async throws {
        let (child, grandchild): (Int32, Int32) = try await withChildProcess(Self.sh("sleep 100 & echo $!; wait")) { child in
            let line = await child.nextLine(within: .seconds(30))
            return (child.pid, try #require(line.flatMap { Int32($0) }, "no pid line"))
        }
        #expect(Self.isGone(child), "the child was reaped")
        // The grandchild was re-parented when its parent died; it is killed, and at most a zombie until its new
        // parent reaps it.
        try await ValkeyTestServers.waitUntil("the grandchild \(grandchild) is gone", timeout: .seconds(20)) {
            Self.isGone(grandchild)
        }
    }

    /// True if `pid` no longer runs (no such process, or a zombie).
    static func isGone(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return true }
        return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
    }

    /// A descriptor of ours without close-on-exec does not reach the child (only 0–2 do).
    @Test func noDescriptorOfOursReachesTheChild() async throws {
        let fd = open("/dev/null", O_RDONLY)
        try #require(fd >= 0)
        let high = fcntl(fd, F_DUPFD, Int32(200))
        close(fd)
        defer { close(high) }
        try #require(high >= 200 && fcntl(high, F_GETFD) & FD_CLOEXEC == 0)
        let result = try await SpawnedProcess.run(ChildCommand("/bin/ls", ["/proc/self/fd"]), timeout: .seconds(30))
        let listed = Set(result.stdoutText.split(separator: "\n").map(String.init))
        #expect(!listed.contains("\(high)"), "inherited descriptors: \(listed.sorted())")
        // 0–2, and the one ls opened to list the directory.
        #expect(listed.isSubset(of: ["0", "1", "2", "3"]), "\(listed.sorted())")
    }

    /// More waiting children than the pool has threads, and the task that lets them finish added last: if a
    /// wait held a pool thread, that task would never run and every wait would time out.
    @Test func waitsHoldNoThreadOfThePool() async throws {
        let children = try (0..<16).map { _ in try SpawnedProcess.spawn(ChildCommand("/bin/cat")) }
        defer { for child in children { child.killBlocking() } }
        let exited = await withTaskGroup(of: Bool.self) { group in
            for child in children { group.addTask { await child.waitForExit(within: .seconds(20)) } }
            group.addTask {
                for child in children { child.closeInput() }
                return true
            }
            var all = true
            for await result in group { all = all && result }
            return all
        }
        #expect(exited)
        #expect(children.allSatisfy { $0.exitCode == 0 })
    }

    @Test func signalsReachTheChild() async throws {
        try await withChildProcess(Self.sh("trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 0.05; done")) { child in
            #expect(await child.nextLine(within: .seconds(30)) == "ready")
            child.send(SIGTERM)
            #expect(await child.waitForExit(within: .seconds(30)))
            #expect(child.exitCode == 7 && child.stdoutText.contains("term"))
        }
        try await withChildProcess(ChildCommand("/bin/sleep", ["100"])) { child in
            #expect(!(await child.waitForExit(within: .milliseconds(100))), "still running")
            await child.kill()
            #expect(!child.isRunning && child.terminationSignal == SIGKILL && child.exitCode == nil)
        }
    }
}
