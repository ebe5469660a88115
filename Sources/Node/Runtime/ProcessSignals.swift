internal import Dispatch
internal import Glibc
internal import Synchronization

/// Process-level helpers for the long-running modes: stdout lines that are never buffered, log lines on
/// stderr, and waiting for SIGINT/SIGTERM.
package enum ProcessIO {
    /// Writes one line to stdout immediately (tests and scripts read `listening on …` from a pipe).
    package static func printLine(_ text: String) {
        self.write(STDOUT_FILENO, text + "\n")
    }

    package static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 { if errno == EINTR { continue } else { return } }
            offset += written
        }
        bytes.removeAll()
    }

    /// Suspends until SIGINT or SIGTERM arrives; returns the signal's name.
    package static func waitForTermination() async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let queue = DispatchQueue(label: "valkeyflight.signals")
            let once = OnceFlag()
            // A parent may have spawned us with these signals blocked; they must reach the source.
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, SIGINT)
            sigaddset(&unblock, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                // The handler holds its source: signal sources live as long as the process.
                source.setEventHandler {
                    _ = source
                    if once.claim() { continuation.resume(returning: name) }
                }
                source.resume()
            }
        }
    }
}

/// True for the first caller of `claim()` only.
package final class OnceFlag: Sendable {
    private let claimed = Atomic(false)
    package init() {}
    package func claim() -> Bool { self.claimed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged }
}
