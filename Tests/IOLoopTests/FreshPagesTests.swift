import Glibc
import Testing

@testable import IOLoop

/// Fresh pages of a large receive buffer are faulted in at once; reused (resident) memory and small buffers are left
/// alone, and no byte changes.
@Suite struct FreshPagesTests {
    static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// A private anonymous mapping of `pages` pages: backed by no page until written.
    static func withMapping(pages: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) {
        let size = pages * Self.page
        let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        #expect(base != MAP_FAILED)
        guard let base, base != MAP_FAILED else { return }
        defer { munmap(base, size) }
        body(UnsafeMutableRawBufferPointer(start: base, count: size))
    }

    /// How many of the pages of `mapping` (page-aligned) are resident, by `mincore`.
    static func residentPages(_ mapping: UnsafeMutableRawBufferPointer) -> Int {
        var vector = [UInt8](repeating: 0, count: mapping.count / Self.page)
        #expect(mincore(mapping.baseAddress, mapping.count, &vector) == 0)
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }

    @Test func aFreshBufferIsFaultedInWholePagesInside() {
        Self.withMapping(pages: 128) { mapping in
            #expect(Self.residentPages(mapping) == 0)
            // A buffer that starts and ends inside pages: only the whole pages within it are populated.
            let buffer = UnsafeMutableRawBufferPointer(rebasing: mapping[100..<(mapping.count - 100)])
            FreshPages.populate(buffer)
            #expect(Self.residentPages(mapping) == 126)
            #expect(mapping.allSatisfy { $0 == 0 })
        }
    }

    @Test func residentMemoryIsLeftAsItIs() {
        Self.withMapping(pages: 128) { mapping in
            // Reused memory: its first page is resident (and holds bytes that must stay).
            let pattern = (0..<Self.page).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
            mapping.copyBytes(from: pattern)
            FreshPages.populate(mapping)
            #expect(Self.residentPages(mapping) == 1)
            #expect(Array(mapping[..<Self.page]) == pattern)
        }
    }

    @Test func smallBuffersAreLeftToFaultAsWritten() {
        Self.withMapping(pages: 128) { mapping in
            let small = UnsafeMutableRawBufferPointer(rebasing: mapping[..<(FreshPages.minimum - 1)])
            FreshPages.populate(small)
            #expect(Self.residentPages(mapping) == 0)
        }
    }
}
