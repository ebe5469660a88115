internal import Glibc
internal import IOLoop

/// Whole-file reads and vectored writes on file descriptors (`-` is stdin/stdout), without Foundation.
package enum FileIO {
    /// Reads all of `path` (or stdin for `-`) into one array.
    package static func readAll(_ path: String) throws(NodeError) -> [UInt8] {
        let fd: Int32 = path == "-" ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        defer { if path != "-" { close(fd) } }
        var info = stat()
        var capacity = 1 << 16
        if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size > 0 {
            capacity = Int(info.st_size) + 1
        }
        var bytes = [UInt8](repeating: 0, count: capacity)
        var count = 0
        while true {
            if count == bytes.count { bytes.append(contentsOf: repeatElement(0, count: bytes.count)) }
            let got = bytes.withUnsafeMutableBytes { raw in
                read(fd, raw.baseAddress! + count, raw.count - count)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "read", path: path, errno: errno)
            }
            if got == 0 { break }
            count += got
        }
        bytes.removeSubrange(count...)
        return bytes
    }

    /// Writes `segments` in order to `path` (or stdout for `-`), creating or truncating the file.
    package static func write(_ segments: [ArraySlice<UInt8>], to path: String) throws(NodeError) {
        let fd: Int32 = path == "-" ? STDOUT_FILENO : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(operation: "create", path: path, errno: errno) }
        do throws(NodeError) {
            try self.write(segments, fd: fd, path: path)
        } catch {
            if path != "-" { close(fd) }
            throw error
        }
        if path != "-", close(fd) != 0 { throw .io(operation: "close", path: path, errno: errno) }
    }

    /// Writes `segments` in order to `fd` with `writev` (64 slices per call, partial writes resumed, EINTR
    /// retried). Blocking.
    /// - Throws: ``NodeError/io(operation:path:errno:)`` (operation "write", `path` naming `fd`).
    package static func write(_ segments: [ArraySlice<UInt8>], fd: Int32, path: String) throws(NodeError) {
        var pending = segments.filter { !$0.isEmpty }[...]
        while !pending.isEmpty {
            let written = IOVectors.with(pending.prefix(64)) { Glibc.writev(fd, $0.baseAddress, Int32($0.count)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "write", path: path, errno: errno)
            }
            var left = written
            while left > 0, let first = pending.first {
                if first.count <= left {
                    left -= first.count
                    pending.removeFirst()
                } else {
                    pending[pending.startIndex] = first.dropFirst(left)
                    left = 0
                }
            }
        }
    }
}
