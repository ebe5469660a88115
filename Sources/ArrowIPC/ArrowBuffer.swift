/// A zero-copy view of bytes: an Arrow column buffer, an IPC message body, or flatbuffer metadata.
///
/// It wraps an `ArraySlice<UInt8>` that shares the storage of the buffer it was cut from, and exposes
/// zero-based byte offsets. Loads are bounds-checked by the slice; callers that hand out views first
/// validate lengths against the metadata so that valid indices never trap.
public struct ArrowBuffer: Sendable, Equatable {
    /// The bytes, sharing storage with the buffer they came from.
    public let bytes: ArraySlice<UInt8>

    /// Wraps a slice without copying it.
    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
    }

    /// Wraps an array without copying it.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes[...]
    }

    /// An empty buffer.
    public static let empty = ArrowBuffer([UInt8]())

    /// Number of bytes.
    @inlinable public var count: Int { self.bytes.count }

    /// The byte at zero-based `offset`.
    @inlinable public subscript(offset: Int) -> UInt8 {
        self.bytes[self.bytes.startIndex + offset]
    }

    /// A sub-view of `count` bytes at zero-based `offset`, sharing storage.
    @inlinable public func slice(offset: Int, count: Int) -> ArrowBuffer {
        let start = self.bytes.startIndex + offset
        return ArrowBuffer(self.bytes[start..<(start + count)])
    }

    /// Loads a little-endian integer at zero-based byte `offset` (unaligned loads are fine).
    @inlinable public func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset <= self.bytes.count - MemoryLayout<T>.size, "load out of bounds")
        return self.bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    /// Bit `index` of an LSB-first bitmap (validity or boolean values).
    @inlinable public func bit(_ index: Int) -> Bool {
        (self[index >> 3] >> UInt8(index & 7)) & 1 == 1
    }
}
