internal import Dispatch
internal import Glibc
internal import Synchronization

/// When spilled files reach the disk (`--fsync`).
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// Each file, and the directory entry that names it, is fsynced before the batch is acknowledged: an
    /// acknowledged batch survives a crash of the machine.
    case always
    /// Nothing is fsynced: the files survive a crash of the process, not of the machine (power loss, kernel
    /// panic can lose acknowledged batches). For speed, when that is acceptable.
    case never
}

/// The directory of `--data-dir`: every stored batch is one Arrow IPC stream file, `DIR/QUEUE/ID.arrows`, results
/// `DIR/QUEUE/ID/result.arrows`. A file is written under a temporary name that never ends in `.arrows`
/// (`.NAME.arrows.tmp-N` beside it), fsynced (``FsyncPolicy/always``) and renamed into place, so a file with the
/// final name is always complete; temporaries left by a crash are removed at start. Files that fail their checks
/// at start are renamed `NAME.arrows.corrupt`. Names starting with `.` belong to the node (its valkey-server's
/// AOF lives in `DIR/.valkey`).
///
/// Every blocking call runs on a Dispatch queue, never on Swift's cooperative pool.
public final class SpillDirectory: Sendable {
    /// The directory.
    public let path: String
    public let fsync: FsyncPolicy
    /// `--max-disk`: most bytes of batch files (`Int.max`: no limit).
    public let maxDisk: Int
    private let nextTemporary = Atomic<UInt64>(1)
    private static let queue = DispatchQueue(label: "valkeyflight.spill", attributes: .concurrent)

    /// Opens (creating it and its parents if needed) the directory.
    ///
    /// - Throws: ``NodeError/io(operation:path:errno:)`` when it cannot be created or is not a directory.
    public init(path: String, fsync: FsyncPolicy = .always, maxDisk: Int = .max) throws(NodeError) {
        var trimmed = path
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.path = trimmed
        self.fsync = fsync
        self.maxDisk = maxDisk
        try Self.makeDirectories(trimmed)
    }

    /// The subdirectory for the embedded valkey-server's AOF.
    public var valkeyDirectory: String { self.path + "/.valkey" }

    // MARK: Names

    /// Refuses keys whose parts cannot be file names here: `.` and `..` (and every name starting with `.`, kept
    /// for the node's own files) and ids containing `.arrows` (which could be mistaken for a batch file or a
    /// temporary one). Every other part of `[A-Za-z0-9._-]` is a safe single path component.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` naming the part.
    static func checkName(_ key: BatchKey) throws(NodeError) {
        for (part, what) in [(key.queue, "queue"), (key.id, "id")] {
            if part.hasPrefix(".") {
                throw .invalidArgument("with --data-dir, a \(what) may not start with '.', got '\(part)'")
            }
            if part.contains(".arrows") {
                throw .invalidArgument("with --data-dir, a \(what) may not contain '.arrows', got '\(part)'")
            }
        }
    }

    /// The directory holding `key`'s file.
    func directory(of key: BatchKey) -> String {
        key.isResult ? "\(self.path)/\(key.queue)/\(key.id)" : "\(self.path)/\(key.queue)"
    }

    /// The file name (without directory) of `key`.
    static func fileName(of key: BatchKey) -> String { key.isResult ? "result.arrows" : "\(key.id).arrows" }

    /// The file of `key`.
    public func file(of key: BatchKey) -> String { self.directory(of: key) + "/" + Self.fileName(of: key) }

    // MARK: Writing

    /// A batch written under its temporary name, not yet visible.
    struct PendingFile: Sendable {
        let key: BatchKey
        let temporary: String
        let final: String
        let size: Int
        /// The temporary file, open for reading and writing: the caller maps it, then closes it.
        let descriptor: Int32
        let layout: SpillLayout
    }

    /// Writes a whole layout as `key`'s file under a temporary name with `writev` from the slices themselves,
    /// fsyncing it per policy. Blocking: call through ``offPool(_:)``.
    ///
    /// - Throws: ``NodeError/resourceExhausted(_:)`` when the disk is full (ENOSPC, EDQUOT);
    ///   ``NodeError/io(operation:path:errno:)`` for other failures. Nothing stays behind on failure.
    func writeTemporary(_ layout: SpillLayout, for key: BatchKey) throws(NodeError) -> PendingFile {
        let (fd, temporary) = try self.createTemporary(for: key)
        do throws(NodeError) {
            try Self.write(layout.segments, to: fd, path: temporary)
            try self.syncFile(fd, path: temporary)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        return PendingFile(key: key, temporary: temporary, final: self.file(of: key), size: layout.size, descriptor: fd,
                           layout: layout)
    }

    /// Creates `key`'s temporary file (and the directories it needs), open for reading and writing. Blocking.
    ///
    /// - Throws: as ``writeTemporary(_:for:)``.
    func createTemporary(for key: BatchKey) throws(NodeError) -> (descriptor: Int32, path: String) {
        let directory = self.directory(of: key)
        if key.isResult { try self.makeDirectory("\(self.path)/\(key.queue)") }
        try self.makeDirectory(directory)
        let number = self.nextTemporary.wrappingAdd(1, ordering: .relaxed).oldValue
        let temporary = "\(directory)/.\(Self.fileName(of: key)).tmp-\(getpid())-\(number)"
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.failure("create", temporary, errno) }
        return (fd, temporary)
    }

    /// Writes `segments` at the end of `fd` (``FileIO/write(_:fd:path:)``). Blocking.
    ///
    /// - Throws: as ``writeTemporary(_:for:)`` (a full disk is RESOURCE_EXHAUSTED).
    static func write(_ segments: [ArraySlice<UInt8>], to fd: Int32, path: String) throws(NodeError) {
        do throws(NodeError) {
            try FileIO.write(segments, fd: fd, path: path)
        } catch {
            guard case .io(_, _, let code) = error else { throw error }
            throw Self.failure("write", path, code)
        }
    }

    /// fsyncs a written file per policy. Blocking.
    func syncFile(_ fd: Int32, path: String) throws(NodeError) {
        guard self.fsync == .always else { return }
        guard Glibc.fsync(fd) == 0 else { throw Self.failure("fsync", path, errno) }
    }

    /// Renames a written file into place (replacing an older file of the key). Quick: called under the store's lock
    /// so that the visible file and the visible batch change together.
    func install(_ file: PendingFile) throws(NodeError) {
        guard rename(file.temporary, file.final) == 0 else { throw Self.failure("rename", file.temporary, errno) }
    }

    /// Makes the rename durable (fsync of the directory) per policy. Blocking.
    func syncDirectory(of key: BatchKey) throws(NodeError) {
        guard self.fsync == .always else { return }
        try Self.syncDirectory(self.directory(of: key))
    }

    /// Drops a file that was written but not installed (its descriptor is closed already).
    func discard(_ file: PendingFile) {
        unlink(file.temporary)
    }

    /// Removes `key`'s file (and a result's now empty directory). Quick: called under the store's lock.
    func remove(_ key: BatchKey) {
        unlink(self.file(of: key))
        if key.isResult { rmdir(self.directory(of: key)) }
    }

    /// Runs blocking file work on the spill queue, off the cooperative pool.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws(NodeError) -> T) async throws(NodeError) -> T {
        let result: Result<T, NodeError> = await withCheckedContinuation { continuation in
            Self.queue.async {
                do throws(NodeError) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    // MARK: Directories

    private func makeDirectory(_ directory: String) throws(NodeError) {
        if mkdir(directory, 0o755) == 0 {
            // The new entry must survive a crash too: fsync its parent.
            if self.fsync == .always { try Self.syncDirectory(Self.parent(of: directory)) }
            return
        }
        guard errno == EEXIST else { throw Self.failure("create the directory", directory, errno) }
    }

    private static func makeDirectories(_ path: String) throws(NodeError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw .io(operation: "use as --data-dir", path: path, errno: ENOTDIR) }
            return
        }
        let parent = Self.parent(of: path)
        if parent != path, !parent.isEmpty { try self.makeDirectories(parent) }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw .io(operation: "create the directory", path: path, errno: errno)
        }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func syncDirectory(_ directory: String) throws(NodeError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open the directory", path: directory, errno: errno) }
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw .io(operation: "fsync the directory", path: directory, errno: errno) }
    }

    static func failure(_ operation: String, _ path: String, _ code: Int32) -> NodeError {
        if code == ENOSPC || code == EDQUOT {
            return .resourceExhausted("the disk of --data-dir is full: cannot \(operation) '\(path)': \(SystemError.message(code))")
        }
        return .io(operation: operation, path: path, errno: code)
    }

    /// Names in `directory` (without `.` and `..`), or nil when it cannot be read.
    static func entries(_ directory: String) -> [(name: String, isDirectory: Bool)]? {
        guard let handle = opendir(directory) else { return nil }
        defer { closedir(handle) }
        var names: [(String, Bool)] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
                var info = stat()
                isDirectory = stat(directory + "/" + name, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
            }
            names.append((name, isDirectory))
        }
        return names
    }
}
