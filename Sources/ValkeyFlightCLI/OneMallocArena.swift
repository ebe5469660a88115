internal import Glibc

/// `flight` and `all` hold batches, and run with one glibc malloc arena (docs/DEPLOYMENT.md, "Store memory under
/// churn"): with one arena per thread, the memory a deleted batch freed on one event-loop thread stays idle while
/// the next batch, received on the other loop, faults in fresh pages — up to twice the held bytes resident, and
/// slower receives.
///
/// glibc reads `GLIBC_TUNABLES` once, before `main`, and by then the Swift runtime already runs threads with arenas
/// of their own, so the setting cannot be made from inside. The process re-executes itself once, with the same
/// arguments and pid, adding `glibc.malloc.arena_max=1` to `GLIBC_TUNABLES`; the re-executed process then puts its
/// environment back as it was, so the processors and the embedded valkey-server it starts inherit nothing of this.
/// An environment that names `glibc.malloc.arena_max` itself is left as it is (the operator's choice), and so is
/// everything when the binary cannot be re-executed (no `/proc/self/exe`, as in a bare chroot): the process then
/// runs with glibc's default.
enum OneMallocArena {
    static let tunable = "glibc.malloc.arena_max"
    static let modes: Set<String> = ["flight", "all"]
    /// Set for the re-executed process: `unset`, or `set:` and the `GLIBC_TUNABLES` it had before.
    static let marker = "VALKEYFLIGHT_ONE_MALLOC_ARENA"

    /// Re-executes the process with one malloc arena when its mode holds batches and the setting is missing;
    /// returns otherwise, or when the re-execution fails. In the re-executed process, restores the environment.
    static func reexecuteIfNeeded() {
        if let mark = getenv(Self.marker).map({ String(cString: $0) }) {
            Self.restore(mark)
            return
        }
        let arguments = CommandLine.arguments
        guard arguments.count > 1, Self.modes.contains(arguments[1]) else { return }
        let current = getenv("GLIBC_TUNABLES").map { String(cString: $0) }
        if let current, current.contains(Self.tunable) { return }
        let value = (current.map { $0.isEmpty ? "" : $0 + ":" } ?? "") + "\(Self.tunable)=1"
        let mark = current.map { "set:" + $0 } ?? "unset"
        guard setenv(Self.marker, mark, 1) == 0, setenv("GLIBC_TUNABLES", value, 1) == 0 else { return }
        _ = execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only a failed exec returns: run on as started.
        Self.restore(mark)
    }

    /// Puts `GLIBC_TUNABLES` back as the marker says and removes the marker (glibc has read the setting by now). A
    /// marker of any other form is someone else's: it stays, and so does everything.
    private static func restore(_ mark: String) {
        if mark == "unset" {
            unsetenv("GLIBC_TUNABLES")
        } else if mark.hasPrefix("set:") {
            setenv("GLIBC_TUNABLES", String(mark.dropFirst(4)), 1)
        } else {
            return
        }
        unsetenv(Self.marker)
    }
}
