internal import Glibc

/// The bytes of a spilled batch file as an `ArraySlice<UInt8>` whose pages are the file's own pages, mapped with
/// `mmap` — so the slices a stored batch is made of, the DoGet reply and a processor's stdin are views of the
/// page cache, and the memory they came from (the receive buffers) is released.
///
/// Swift's `[UInt8]` cannot adopt foreign memory, and the whole send path (GRPCWire's outbound slices, the
/// processors' `writev`) takes `ArraySlice<UInt8>`. So the mapping is placed *inside* an array's own storage:
/// an array is allocated large enough (≥ ``minimumAllocation``) that glibc serves it as an individual `mmap`
/// chunk, the file is mapped over the page-aligned part of its element storage with `MAP_FIXED | MAP_PRIVATE`,
/// and the slice starts at the first mapped byte. When the last slice goes away, Swift frees the array and
/// glibc `munmap`s the whole chunk — the file mapping with it — so the mapping is owned by the array's
/// reference count and unmapped on its last release. Private and writable: a write (none of ours) would copy
/// that page instead of faulting or reaching the file.
///
/// This relies on two facts that are checked on every call, never assumed: the array's storage object is what
/// `malloc` returned (found with the array's own reference, so the element offset is measured, not guessed),
/// and glibc's chunk header in front of it has its `IS_MMAPPED` bit set with a size covering the mapping.
/// When either check fails (another allocator, `M_MMAP_MAX` reached) the file is read into a plain array.
enum MappedFile {
    /// Smallest array allocated to hold a mapping: above glibc's largest dynamic mmap threshold (32 MiB) and
    /// its arena heap size (64 MiB), so the allocation is its own `mmap` chunk. Only address space: the pages
    /// outside the file mapping are never touched.
    static let minimumAllocation = 64 << 20 + 4096

    /// glibc's `IS_MMAPPED` flag in a chunk's size word.
    private static let isMmappedFlag: UInt = 0x2

    /// Distance from an `[UInt8]` storage object to its first element, measured on an array of our own.
    private static let elementOffset: Int? = {
        guard MemoryLayout<[UInt8]>.size == MemoryLayout<UnsafeRawPointer>.size else { return nil }
        let probe = [UInt8](repeating: 0, count: 16)
        let object = unsafeBitCast(probe, to: UnsafeRawPointer.self)
        let elements = probe.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
        guard let elements, elements > object else { return nil }
        let offset = elements - object
        return (16...256).contains(offset) ? offset : nil
    }()

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// How many batches may be mapped at once: each mapping splits its chunk into three of the process's memory
    /// maps, and `vm.max_map_count` (default 65,530) bounds those; 8,192 are left for everything else.
    static let maximumMappings: Int = {
        var limit = 65_530
        let fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            var buffer = [UInt8](repeating: 0, count: 32)
            let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 31) }
            close(fd)
            if got > 0, let value = Int(String(decoding: buffer.prefix(got), as: UTF8.self).filter(\.isNumber)) {
                limit = value
            }
        }
        return max(0, (limit - 8192) / 3)
    }()

    /// Off under strict overcommit (`vm.overcommit_memory` 2): there every reserved-but-untouched allocation counts
    /// against the commit limit, so the address space the mappings take would exhaust it; batches then stay in
    /// memory.
    static let enabled: Bool = {
        let fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var byte: UInt8 = 0
        return Glibc.read(fd, &byte, 1) != 1 || byte != UInt8(ascii: "2")
    }()

    /// The `size` bytes of the open file `fd` as a mapping, or nil when the checks above fail (the caller then
    /// keeps the bytes in memory, see ``read(_:size:path:)``).
    static func map(_ fd: Int32, size: Int) -> ArraySlice<UInt8>? {
        guard size > 0, self.enabled, let elementOffset = self.elementOffset else { return nil }
        let page = self.pageSize
        let (padded, overflow) = size.addingReportingOverflow(3 * page)
        guard !overflow else { return nil }
        let mappedLength = (size + page - 1) / page * page
        let capacity = max(padded, self.minimumAllocation)
        var skip = -1
        let storage = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            initialized = 0
            guard let base = buffer.baseAddress else { return }
            let raw = UnsafeMutableRawPointer(base)
            let address = UInt(bitPattern: raw)
            let lead = Int((UInt(page) - address % UInt(page)) % UInt(page))
            // glibc's chunk: prev_size, size (with flags), then the memory malloc returned (the storage object).
            let object = raw - elementOffset
            let sizeWord = (object - MemoryLayout<UInt>.size).load(as: UInt.self)
            guard sizeWord & Self.isMmappedFlag != 0 else { return }
            let chunkStart = object - 2 * MemoryLayout<UInt>.size
            let chunkEnd = chunkStart + Int(sizeWord & ~UInt(7))
            let target = raw + lead
            guard target + mappedLength <= chunkEnd, lead + size <= buffer.count else { return }
            let result = mmap(target, mappedLength, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0)
            guard let result, result != MAP_FAILED, result == target else { return }
            skip = lead
            initialized = lead + size
        }
        guard skip >= 0 else { return nil }
        return storage[skip..<(skip + size)]
    }

    /// The `size` bytes of the open file `fd` read into memory.
    ///
    /// - Throws: ``NodeError/io(operation:path:errno:)`` when the file cannot be read.
    static func read(_ fd: Int32, size: Int, path: String) throws(NodeError) -> [UInt8] {
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            initialized = 0
            guard let base = buffer.baseAddress else { return }
            var done = 0
            while done < size {
                let got = pread(fd, base + done, size - done, off_t(done))
                if got < 0, errno == EINTR { continue }
                if got <= 0 {
                    failure = got < 0 ? errno : EIO
                    break
                }
                done += got
            }
            // UInt8 needs no initialization; a failed read's array is dropped below.
            initialized = size
        }
        guard failure == 0 else { throw .io(operation: "read", path: path, errno: failure) }
        return bytes
    }
}

/// Whole input files for the client commands, mapped rather than read (``MappedFile``).
package enum MappedInput {
    /// The bytes of the regular file at `path` as a private mapping (no copy into a fresh, zero-filled array;
    /// pages come from the page cache as they are touched), or nil when `path` is not a non-empty regular file
    /// or cannot be mapped (the caller reads it instead).
    package static func map(_ path: String) -> ArraySlice<UInt8>? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size > 0 else { return nil }
        return MappedFile.map(fd, size: Int(info.st_size))
    }
}
