internal import Glibc

/// Faulting in the pages of a large new buffer before bytes are written into it.
///
/// A buffer the heap has just grown for is backed by no pages yet, so the kernel's receive copy into it takes one
/// page fault per 4 KiB, each trapping in the middle of the copy. `MADV_POPULATE_WRITE` (Linux 5.14) faults the
/// same pages in one call, without the traps. A buffer whose first page is already resident (memory the heap
/// reuses) is left alone (docs/BENCHMARKS.md, "Fresh pages").
package enum FreshPages {
    /// Buffers smaller than this are left to fault in as they are written.
    package static let minimum = 256 << 10

    /// Faults in the whole pages inside `buffer` (writable, contents unchanged). Best effort: an older kernel
    /// (`EINVAL`) or a refused populate (`ENOMEM`) leaves the pages to fault in on first write, as without it.
    package static func populate(_ buffer: UnsafeMutableRawBufferPointer) {
        guard buffer.count >= Self.minimum, let base = buffer.baseAddress else { return }
        let page = UInt(Self.pageSize)
        let start = (UInt(bitPattern: base) + page - 1) & ~(page - 1)
        let end = (UInt(bitPattern: base) + UInt(buffer.count)) & ~(page - 1)
        guard end > start, let first = UnsafeMutableRawPointer(bitPattern: start) else { return }
        // Reused memory is resident all through, and populating it would still walk (and reference) every page:
        // ~170 ns a page here. The first page tells which case this is.
        var resident: UInt8 = 0
        guard mincore(first, Int(page), &resident) == 0, resident & 1 == 0 else { return }
        _ = madvise(first, Int(end - start), Self.populateWrite)
    }

    private static let populateWrite: Int32 = 23  // MADV_POPULATE_WRITE, which Glibc's Swift module does not export
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
}
