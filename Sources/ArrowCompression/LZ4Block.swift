/// The LZ4 block format (lz4_Block_format.md): sequences of a token, literals, a 2-byte offset and a match.
enum LZ4Block {
    /// Decodes one block from `input` into `output[start..<output.count]`. Matches may reach back to
    /// `floor` (the frame's start for linked blocks, `start` for independent ones).
    ///
    /// - Returns: the number of bytes written.
    /// - Throws: `.corrupt` for a zero or too-distant offset, `.truncated` for a sequence cut short,
    ///   `.limitExceeded` when the block decodes to more than `output` holds.
    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, at start: Int,
                       floor: Int, inputOffset: Int) throws(CompressionError) -> Int {
        guard let src = input.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw .truncated(what: "LZ4 block", offset: inputOffset, needed: 1, available: 0)
        }
        let srcEnd = input.count
        let dstEnd = output.count
        guard let dst = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            // Nothing may be written: only an empty last sequence (token 0x00) is valid.
            guard srcEnd == 1, src[0] == 0 else {
                throw .limitExceeded(what: "LZ4 decompressed size", limit: 0, found: 1)
            }
            return 0
        }
        var ip = 0
        var op = start
        while true {
            guard ip < srcEnd else { throw .truncated(what: "LZ4 sequence token", offset: inputOffset + ip, needed: 1, available: 0) }
            let token = Int(src[ip])
            ip += 1
            // Fast path: short literals and a match with offset ≥ 8, all well inside both buffers, copied in
            // 8-byte words (overshooting into bytes that are written next anyway).
            if token < 0xF0, token & 15 != 15, ip + 16 <= srcEnd, op + 40 <= dstEnd {
                let literals = token >> 4
                let raw = UnsafeMutableRawPointer(dst + op)
                let from = UnsafeRawPointer(src + ip)
                raw.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                raw.storeBytes(of: from.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                ip += literals
                op += literals
                let offset = Int(src[ip]) | Int(src[ip + 1]) << 8
                let length = (token & 15) + 4
                if offset >= 8, offset <= op - floor {
                    ip += 2
                    let target = UnsafeMutableRawPointer(dst + op)
                    let source = UnsafeRawPointer(dst + (op - offset))
                    target.storeBytes(of: source.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    target.storeBytes(of: source.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                    if length > 16 {
                        target.storeBytes(of: source.loadUnaligned(fromByteOffset: 16, as: UInt64.self), toByteOffset: 16, as: UInt64.self)
                    }
                    op += length
                    continue
                }
                // Not a fast match: decode the match the careful way below.
                ip += 2
                guard offset != 0, offset <= op - floor else {
                    throw .corrupt(what: "LZ4 match offset", offset: inputOffset + ip - 2,
                                   reason: "offset \(offset) reaches before the start of the data (\(op - floor) bytes decoded)")
                }
                guard length <= dstEnd - op else {
                    throw .limitExceeded(what: "LZ4 decompressed size", limit: dstEnd, found: op + length)
                }
                copyMatch(dst, to: op, offset: offset, length: length)
                op += length
                continue
            }
            var literals = token >> 4
            if literals == 15 {
                while true {
                    guard ip < srcEnd else {
                        throw .truncated(what: "LZ4 literal length", offset: inputOffset + ip, needed: 1, available: 0)
                    }
                    let byte = Int(src[ip])
                    ip += 1
                    literals += byte
                    guard literals <= srcEnd else {
                        throw .truncated(what: "LZ4 literals", offset: inputOffset + ip, needed: literals, available: srcEnd - ip)
                    }
                    if byte != 255 { break }
                }
            }
            guard literals <= srcEnd - ip else {
                throw .truncated(what: "LZ4 literals", offset: inputOffset + ip, needed: literals, available: srcEnd - ip)
            }
            guard literals <= dstEnd - op else {
                throw .limitExceeded(what: "LZ4 decompressed size", limit: dstEnd, found: op + literals)
            }
            (dst + op).update(from: src + ip, count: literals)
            ip += literals
            op += literals
            if ip == srcEnd { return op - start }   // the last sequence has no match
            guard ip + 2 <= srcEnd else {
                throw .truncated(what: "LZ4 match offset", offset: inputOffset + ip, needed: 2, available: srcEnd - ip)
            }
            let offset = Int(src[ip]) | Int(src[ip + 1]) << 8
            ip += 2
            guard offset != 0, offset <= op - floor else {
                throw .corrupt(what: "LZ4 match offset", offset: inputOffset + ip - 2,
                               reason: "offset \(offset) reaches before the start of the data (\(op - floor) bytes decoded)")
            }
            var length = (token & 15) + 4
            if token & 15 == 15 {
                while true {
                    guard ip < srcEnd else {
                        throw .truncated(what: "LZ4 match length", offset: inputOffset + ip, needed: 1, available: 0)
                    }
                    let byte = Int(src[ip])
                    ip += 1
                    length += byte
                    guard length <= dstEnd else {
                        throw .limitExceeded(what: "LZ4 decompressed size", limit: dstEnd, found: op + length)
                    }
                    if byte != 255 { break }
                }
            }
            guard length <= dstEnd - op else {
                throw .limitExceeded(what: "LZ4 decompressed size", limit: dstEnd, found: op + length)
            }
            copyMatch(dst, to: op, offset: offset, length: length)
            op += length
        }
    }

    /// Copies `length` bytes from `op - offset` to `op`, overlapping when `offset < length` (a repeat).
    @inline(__always)
    static func copyMatch(_ dst: UnsafeMutablePointer<UInt8>, to op: Int, offset: Int, length: Int) {
        let from = dst + (op - offset)
        let to = dst + op
        if offset >= length {
            to.update(from: from, count: length)
        } else if offset == 1 {
            to.update(repeating: from.pointee, count: length)
        } else {
            // Copy in chunks of `offset` bytes, doubling: each chunk repeats the pattern.
            var done = 0
            var chunk = offset
            while done < length {
                let n = min(chunk, length - done)
                (to + done).update(from: from, count: n)
                done += n
                chunk = done + offset
            }
        }
    }

    /// The largest compressed size of `count` input bytes.
    static func bound(_ count: Int) -> Int { count + count / 255 + 16 }

    /// 4,096 table entries of 4 bytes: 16 KiB, which stays in L1 (liblz4's default memory use); a 64 KiB table
    /// missed it on every lookup and ran at 0.6× the speed for a 1.04× larger output.
    static let hashLog = 12
    static let minMatch = 4
    /// The last match must start at least this many bytes before the end of the block.
    static let matchFindLimit = 12
    /// The last this-many bytes are always literals.
    static let lastLiterals = 5
    /// Each `1 << skipStrength` failed probes in a row lengthen the step by one byte (fast over incompressible runs).
    static let skipStrength = 6

    /// Compresses `input` as one independent block into `output` (at least `bound(input.count)` bytes).
    /// `table` is scratch space of `1 << hashLog` entries.
    ///
    /// Greedy parsing, as liblz4's fast mode: positions are hashed on their first 5 bytes (an 8-byte load, so
    /// int64 columns whose low bytes repeat still spread), the next probe's hash is computed while the current
    /// candidate is checked, and after every match the position right after it is tried first.
    ///
    /// - Returns: the compressed size.
    static func encode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
                       table: UnsafeMutablePointer<Int32>) -> Int {
        let count = input.count
        guard let src = input.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let dst = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
        precondition(output.count >= self.bound(count), "LZ4 output buffer too small")
        let room = output.count
        var op = 0
        var anchor = 0
        if count > self.matchFindLimit {
            table.update(repeating: -1, count: 1 << self.hashLog)
            let raw = UnsafeRawPointer(src)
            @inline(__always) func read32(_ at: Int) -> UInt32 { raw.loadUnaligned(fromByteOffset: at, as: UInt32.self) }
            // Reads 8 bytes at `at`: callers keep `at <= limit`, 12 bytes before the end.
            @inline(__always) func hash(_ at: Int) -> Int {
                let value = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))
                return Int(truncatingIfNeeded: ((value &<< 24) &* 889_523_592_379) &>> UInt64(64 - LZ4Block.hashLog))
            }
            let limit = count - self.matchFindLimit
            let matchEnd = count - self.lastLiterals
            table[hash(0)] = 0
            var ip = 1
            // A match found right after the previous one (its candidate), or -1: search from `ip`.
            var next = -1
            search: while ip <= limit {
                var candidate = next
                next = -1
                if candidate < 0 {
                    // Probe forward until a position's candidate matches its first 4 bytes.
                    var probes = 1 << self.skipStrength
                    var forward = ip
                    var forwardHash = hash(ip)
                    while true {
                        ip = forward
                        let h = forwardHash
                        forward = ip &+ (probes &>> self.skipStrength)
                        probes &+= 1
                        if forward > limit { break search }
                        candidate = Int(table[h])
                        forwardHash = hash(forward)
                        table[h] = Int32(truncatingIfNeeded: ip)
                        if candidate >= 0, ip &- candidate <= 65_535, read32(candidate) == read32(ip) { break }
                    }
                }
                var start = ip
                var reference = candidate
                // Extend backwards over literals.
                while start > anchor, reference > 0, src[start &- 1] == src[reference &- 1] {
                    start &-= 1
                    reference &-= 1
                }
                // Extend forwards, 8 bytes at a time.
                var end = ip &+ 4
                var refEnd = candidate &+ 4
                var mismatched = false
                while end &+ 8 <= matchEnd {
                    let diff = raw.loadUnaligned(fromByteOffset: end, as: UInt64.self)
                        ^ raw.loadUnaligned(fromByteOffset: refEnd, as: UInt64.self)
                    if diff != 0 {
                        end &+= UInt64(littleEndian: diff).trailingZeroBitCount &>> 3
                        mismatched = true
                        break
                    }
                    end &+= 8
                    refEnd &+= 8
                }
                if !mismatched {
                    while end < matchEnd, src[end] == src[refEnd] {
                        end &+= 1
                        refEnd &+= 1
                    }
                }
                op = self.emit(dst, at: op, room: room, source: src, literalsAt: anchor, sourceCount: count,
                               literalCount: start &- anchor, offset: start &- reference, matchLength: end &- start)
                ip = end
                anchor = end
                if ip > limit { break }
                table[hash(ip &- 2)] = Int32(truncatingIfNeeded: ip &- 2)
                // The position right after the match, before searching again.
                let h = hash(ip)
                let after = Int(table[h])
                table[h] = Int32(truncatingIfNeeded: ip)
                if after >= 0, ip &- after <= 65_535, read32(after) == read32(ip) {
                    next = after
                } else {
                    ip &+= 1
                }
            }
        }
        // Last literals.
        let literals = count - anchor
        dst[op] = UInt8(min(literals, 15) << 4)
        op = self.putLength(literals, into: dst, at: op + 1)
        (dst + op).update(from: src + anchor, count: literals)
        return op + literals
    }

    /// Writes one sequence: token, literal length, the literals `source[literalsAt...]`, offset, match length.
    /// Up to 16 literals are moved as two 8-byte words when 16 bytes are readable at the source and writable at
    /// the destination (`room`, `sourceCount`); the bytes past the literals are overwritten by what follows.
    @inline(__always)
    private static func emit(_ dst: UnsafeMutablePointer<UInt8>, at start: Int, room: Int,
                             source: UnsafePointer<UInt8>, literalsAt: Int, sourceCount: Int,
                             literalCount: Int, offset: Int, matchLength: Int) -> Int {
        var op = start
        let tokenAt = op
        op &+= 1
        var token = min(literalCount, 15) << 4
        op = self.putLength(literalCount, into: dst, at: op)
        let literals = source + literalsAt
        if literalCount <= 16, literalsAt &+ 16 <= sourceCount, op &+ 16 <= room {
            let from = UnsafeRawPointer(literals)
            let to = UnsafeMutableRawPointer(dst + op)
            to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
            to.storeBytes(of: from.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
        } else {
            (dst + op).update(from: literals, count: literalCount)
        }
        op &+= literalCount
        dst[op] = UInt8(truncatingIfNeeded: offset)
        dst[op &+ 1] = UInt8(truncatingIfNeeded: offset >> 8)
        op &+= 2
        let code = matchLength - self.minMatch
        token |= min(code, 15)
        op = self.putLength(code, into: dst, at: op)
        dst[tokenAt] = UInt8(token)
        return op
    }

    /// Writes the bytes that continue a token's 4-bit `length` field (nothing below 15: 255s, then the rest) at
    /// `op`; returns the position after them.
    @inline(__always)
    private static func putLength(_ length: Int, into dst: UnsafeMutablePointer<UInt8>, at op: Int) -> Int {
        guard length >= 15 else { return op }
        var op = op
        var rest = length - 15
        while rest >= 255 {
            dst[op] = 255
            op &+= 1
            rest &-= 255
        }
        dst[op] = UInt8(rest)
        return op &+ 1
    }
}
