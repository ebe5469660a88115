/// Runs `body` with `command` started; the child's whole process group is killed and the child reaped on every
/// path out of `body` (a child that already exited is only reaped). `body` may wait for a graceful exit itself.
///
/// - Throws: what ``SpawnedProcess/spawn(_:)`` or `body` throws.
public func withChildProcess<T>(
    _ command: ChildCommand, _ body: (SpawnedProcess) async throws -> T
) async throws -> T {
    let child = try SpawnedProcess.spawn(command)
    do {
        let result = try await body(child)
        await child.kill()
        return result
    } catch {
        await child.kill()
        throw error
    }
}

extension SpawnedProcess {
    /// Runs `command` to completion with `stdin` as its input (then closed), and returns its exit and output.
    /// Waits suspended (no thread of the cooperative pool is held).
    ///
    /// - Throws: ``ChildProcessError/timedOut(command:seconds:output:)`` when it did not finish within `timeout`
    ///   (its group is killed first), or a spawn failure.
    public static func run(_ command: ChildCommand, stdin: [UInt8] = [], timeout: Duration) async throws(ChildProcessError)
        -> ChildResult
    {
        let child = try SpawnedProcess.spawn(command)
        child.write(stdin)
        child.closeInput()
        guard await child.waitForExit(within: timeout) else {
            await child.kill()
            throw child.timeout(timeout)
        }
        return child.result
    }

    /// ``run(_:stdin:timeout:)`` blocking the calling thread (for synchronous tests and helpers).
    public static func runBlocking(_ command: ChildCommand, stdin: [UInt8] = [], timeout: Duration)
        throws(ChildProcessError) -> ChildResult
    {
        let child = try SpawnedProcess.spawn(command)
        child.write(stdin)
        child.closeInput()
        guard child.waitForExitBlocking(timeout: timeout) else {
            child.killBlocking()
            throw child.timeout(timeout)
        }
        return child.result
    }

    private func timeout(_ limit: Duration) -> ChildProcessError {
        let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        let output = self.stdoutText + self.stderrText
        return .timedOut(command: self.command.commandLine, seconds: seconds, output: output)
    }
}
