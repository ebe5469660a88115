/// Valkey Cluster key slots: CRC16-XMODEM of the key (or of its hash tag) modulo 16384.
public enum HashSlot {
    /// Number of slots in a cluster.
    public static let count = 16384

    /// CRC16 XMODEM: polynomial 0x1021, initial value 0, no reflection, no final xor.
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }

    /// The slot of `key`, honouring a `{tag}`: the bytes between the first `{` and the first `}` after
    /// it, when there is at least one.
    public static func slot(for key: some Collection<UInt8>) -> Int {
        let bytes = Array(key)
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
            let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            return Int(crc16(bytes[(open + 1)..<close]) & 0x3FFF)
        }
        return Int(crc16(bytes) & 0x3FFF)
    }

    /// The slot of a string key.
    public static func slot(for key: String) -> Int { slot(for: Array(key.utf8)) }
}
