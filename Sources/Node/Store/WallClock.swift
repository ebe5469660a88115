internal import Glibc

/// Wall-clock time for timestamps shown to users (status `created_at`); durations use ContinuousClock.
package enum WallClock {
    /// Milliseconds since the Unix epoch.
    package static func milliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
