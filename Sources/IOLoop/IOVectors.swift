package import Glibc

/// Byte slices as one `iovec` array, for a single `writev` or `sendmsg` of all of them.
package enum IOVectors {
    /// Calls `body` with an `iovec` for each of `slices`, in order. A slice's address is only valid inside its own
    /// `withUnsafeBytes`, so the closures are nested and `body` runs in the innermost; callers pass at most a few
    /// dozen slices (the writers here pass 64 at most).
    package static func with<R>(_ slices: ArraySlice<ArraySlice<UInt8>>, _ body: (UnsafeBufferPointer<iovec>) -> R)
        -> R
    {
        var vectors: [iovec] = []
        vectors.reserveCapacity(slices.count)
        func gather(_ index: Int) -> R {
            if index == slices.endIndex { return vectors.withUnsafeBufferPointer(body) }
            return slices[index].withUnsafeBytes { bytes in
                let base = UnsafeMutableRawPointer(mutating: bytes.baseAddress)
                vectors.append(iovec(iov_base: base, iov_len: bytes.count))
                return gather(index + 1)
            }
        }
        return gather(slices.startIndex)
    }
}
