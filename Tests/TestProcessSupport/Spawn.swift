internal import Glibc

/// posix_spawn and the descriptors around it.
enum Spawn {
    private typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias AddChdir =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    /// glibc functions Swift's Glibc module does not export (they are behind `_GNU_SOURCE`), found at run time.
    private struct Functions: @unchecked Sendable {
        // @unchecked: C function pointers, immutable after the one initialisation.
        let pipe2: Pipe2?
        let addCloseFrom: AddCloseFrom?
        let addChdir: AddChdir?
    }

    private static let functions: Functions = {
        let handle = dlopen(nil, RTLD_NOW)
        func find<F>(_ name: String, as type: F.Type) -> F? {
            guard let symbol = dlsym(handle, name) else { return nil }
            return unsafeBitCast(symbol, to: type)
        }
        return Functions(
            pipe2: find("pipe2", as: Pipe2.self),
            addCloseFrom: find("posix_spawn_file_actions_addclosefrom_np", as: AddCloseFrom.self),
            addChdir: find("posix_spawn_file_actions_addchdir_np", as: AddChdir.self))
    }()

    /// A pipe whose ends are close-on-exec from the start (`pipe2(O_CLOEXEC)`), so no child spawned meanwhile by
    /// another thread inherits them.
    static func pipe() throws(ChildProcessError) -> (read: Int32, write: Int32) {
        guard let pipe2 = Self.functions.pipe2 else { throw .unsupported("glibc without pipe2") }
        var fds: [Int32] = [-1, -1]
        guard pipe2(&fds, O_CLOEXEC) == 0 else { throw .pipeFailed(errno: errno) }
        return (fds[0], fds[1])
    }

    static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Spawns `command` in a new process group with the given child ends for 0–2 (nil: as `command` says).
    static func spawn(_ command: ChildCommand, stdin: Int32?, stdout: Int32?, stderr: Int32?)
        throws(ChildProcessError) -> Int32
    {
        guard let addCloseFrom = Self.functions.addCloseFrom, let addChdir = Self.functions.addChdir else {
            throw .unsupported("glibc without posix_spawn_file_actions_addclosefrom_np/addchdir_np (needs 2.34)")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Our ends are all above 2 (0–2 are the test process's own, open), so dup2 onto 0–2 clobbers none.
        for (target, stream, fd) in [(Int32(0), command.stdin, stdin), (1, command.stdout, stdout)] {
            switch stream {
            case .pipe: if let fd { posix_spawn_file_actions_adddup2(&actions, fd, target) }
            case .discard: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .inherit, .stdout: break
            }
        }
        switch command.stderr {
        case .pipe: if let stderr { posix_spawn_file_actions_adddup2(&actions, stderr, 2) }
        case .discard: posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        case .stdout: posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .inherit: break
        }
        // Nothing else of ours reaches the child, close-on-exec or not (no /proc/self/fd scan needed).
        _ = addCloseFrom(&actions, 3)
        if let directory = command.directory { _ = addChdir(&actions, directory) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var argv = ([command.executable] + command.arguments).map { strdup($0) } + [nil]
        var envp = Self.environment(command).map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let code =
            command.executable.contains("/")
            ? posix_spawn(&pid, command.executable, &actions, &attributes, &argv, &envp)
            : posix_spawnp(&pid, command.executable, &actions, &attributes, &argv, &envp)
        guard code == 0 else { throw .spawnFailed(command: command.commandLine, errno: code) }
        return pid
    }

    /// `NAME=value` entries: ours (unless not inherited) with `command.environment` added or replacing.
    static func environment(_ command: ChildCommand) -> [String] {
        var result: [String] = []
        if command.inheritEnvironment {
            var pointer = environ
            while let entry = pointer.pointee {
                let text = String(cString: entry)
                let name = String(text.prefix { $0 != "=" })
                if command.environment[name] == nil { result.append(text) }
                pointer += 1
            }
        }
        for (name, value) in command.environment.sorted(by: { $0.key < $1.key }) { result.append("\(name)=\(value)") }
        return result
    }
}
