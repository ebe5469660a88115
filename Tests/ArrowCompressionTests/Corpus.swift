import Foundation

/// The deterministic inputs of Tests/Fixtures/ArrowCompression/corpus.py, byte for byte.
enum Corpus {
    static let words = ["arrow", "flight", "valkey", "batch", "column", "buffer", "stream", "record", "schema", "zstd",
                        "lz4", "frame", "block", "literal", "match", "offset", "huffman", "entropy", "window", "checksum"]

    struct LCG {
        var x: UInt64
        init(_ seed: UInt64) { self.x = seed }
        mutating func next() -> UInt64 {
            self.x = self.x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return self.x >> 33
        }
    }

    static func text(_ n: Int, seed: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n + 16)
        var g = LCG(seed)
        while out.count < n {
            out.append(contentsOf: Self.words[Int(g.next() % UInt64(Self.words.count))].utf8)
            out.append(0x20)
        }
        return Array(out[0..<n])
    }

    static func random(_ n: Int, seed: UInt64) -> [UInt8] {
        var g = LCG(seed)
        return (0..<n).map { _ in UInt8(truncatingIfNeeded: g.next()) }
    }

    static func ints(_ n: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        for i in 0..<(n / 8) { withUnsafeBytes(of: UInt64(i * 3).littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    static func mixed(_ n: Int) -> [UInt8] {
        var out: [UInt8] = []
        var chunk: UInt64 = 0
        while out.count < n {
            out += chunk % 2 == 0 ? self.text(4096, seed: chunk) : self.random(256, seed: chunk)
            chunk += 1
        }
        return Array(out[0..<n])
    }

    static let inputs: [String: [UInt8]] = [
        "empty": [],
        "one": [0x41],
        "zeros": [UInt8](repeating: 0, count: 300_000),
        "text": text(200_000, seed: 1),
        "random": random(20_000, seed: 2),
        "ints": ints(160_000),
        "mixed": mixed(260_000),
    ]

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/Fixtures/ArrowCompression")
    static let frames = fixtures.appendingPathComponent("frames")

    /// The fixture files whose names end with `suffix`, sorted.
    static func frameFiles(_ suffix: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.frames.path)) ?? []
        return names.filter { $0.hasSuffix(suffix) }.sorted()
    }

    static func read(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: self.frames.appendingPathComponent(name)))
    }

    /// The input a fixture was made from (its name's first component).
    static func input(of name: String) -> [UInt8]? {
        self.inputs[String(name.prefix { $0 != "." })]
    }

    static var python: String {
        ProcessInfo.processInfo.environment["VALKEYFLIGHT_PYTHON"] ?? root.appendingPathComponent(".venv/bin/python").path
    }
}
