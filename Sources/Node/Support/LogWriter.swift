internal import Glibc
import Synchronization

/// Writes log lines to stderr on a thread of its own, so a logging task never blocks on a slow or full stderr
/// pipe. Lines wait in a bounded queue (at most 4 MiB; beyond it lines are dropped and the drop is reported
/// with the next line written).
package final class LogWriter: Sendable {
    /// The process's stderr writer.
    package static let shared = LogWriter(fd: STDERR_FILENO)

    private struct Queue {
        var lines: [String] = []
        var bytes = 0
        var dropped = 0
        var writing = false
        var started = false
    }

    private let fd: Int32
    private let queue = Mutex(Queue())
    /// Signalled when lines are queued (the thread sleeps on it) and when the queue drained (``flush(within:)``).
    private let wake: WakeEvent
    static let maxQueuedBytes = 4 << 20

    private init(fd: Int32) {
        self.fd = fd
        self.wake = WakeEvent()
    }

    /// Queues `line` (which ends with a newline) for stderr.
    package func enqueue(_ line: String) {
        let start = self.queue.withLock { q -> Bool in
            if q.bytes + line.utf8.count > Self.maxQueuedBytes {
                q.dropped += 1
                return false
            }
            q.lines.append(line)
            q.bytes += line.utf8.count
            defer { q.started = true }
            return !q.started
        }
        if start { self.startThread() }
        self.wake.signal()
    }

    /// Waits (blocking, at most `within`) until every queued line was written: at exit, so the last lines are not
    /// lost. Never call it from a task that must stay responsive.
    package func flush(within: Duration = .seconds(1)) {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            let idle = self.queue.withLock { $0.lines.isEmpty && !$0.writing }
            if idle { return }
            usleep(1000)
        }
    }

    private func startThread() {
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        if pthread_create(&thread, nil, logWriterThreadEntry, box.toOpaque()) == 0 {
            pthread_detach(thread)
        } else {
            box.release()
            // No thread: write synchronously from now on rather than lose lines.
            self.drainSynchronously()
        }
    }

    fileprivate func runThread() {
        while true {
            self.wake.wait()
            self.drainSynchronously()
        }
    }

    private func drainSynchronously() {
        while true {
            let (lines, dropped) = self.queue.withLock { q -> ([String], Int) in
                let taken = (q.lines, q.dropped)
                q.lines = []
                q.bytes = 0
                q.dropped = 0
                q.writing = !taken.0.isEmpty || taken.1 > 0
                return taken
            }
            if lines.isEmpty && dropped == 0 { return }
            var text = dropped > 0 ? "[\(dropped) log lines dropped: stderr was not read fast enough]\n" : ""
            text += lines.joined()
            ProcessIO.write(self.fd, text)
            self.queue.withLock { $0.writing = false }
        }
    }
}

private func logWriterThreadEntry(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let argument else { return nil }
    Unmanaged<LogWriter>.fromOpaque(argument).takeRetainedValue().runThread()
    return nil
}

/// A pipe a thread blocks on until another signals it (signals coalesce: a full pipe already wakes the reader).
final class WakeEvent: Sendable {
    private let readFD: Int32
    private let writeFD: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        self.readFD = fds[0]
        self.writeFD = fds[1]
        _ = fcntl(self.readFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(self.writeFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(self.writeFD, F_SETFL, fcntl(self.writeFD, F_GETFL) | O_NONBLOCK)
    }

    func signal() {
        var one: UInt8 = 1
        _ = Glibc.write(self.writeFD, &one, 1)
    }

    func wait() {
        var drained = [UInt8](repeating: 0, count: 64)
        while drained.withUnsafeMutableBytes({ Glibc.read(self.readFD, $0.baseAddress, $0.count) }) < 0 && errno == EINTR {}
    }
}
