internal import Node
public import FlightRPC
public import ArgumentParser


/// A duration option: bare seconds (`30`, `1.5`), or `500ms`, `30s`, `5m`, `1h`, `7d`, and combinations like `1h30m`.
public struct DurationOption: ExpressibleByArgument, Sendable, Equatable, CustomStringConvertible {
    public let duration: Duration
    public let description: String

    public init?(argument: String) {
        guard let duration = Self.parse(argument) else { return nil }
        self.duration = duration
        self.description = argument
    }

    /// Bare seconds (`30`, `1.5`) or numbers with `ms`, `s`, `m`, `h`, `d`, also combined (`1h30m`).
    static func parse(_ text: String) -> Duration? {
        var total = Duration.zero
        var rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { ($0.isASCII && $0.isNumber) || $0 == "." }
            guard !number.isEmpty, let value = Double(number), value.isFinite, value >= 0 else { return nil }
            rest = rest.dropFirst(number.count)
            let unitSeconds: Double
            if rest.hasPrefix("ms") {
                unitSeconds = 0.001
                rest = rest.dropFirst(2)
            } else if let character = rest.first, "smhd".contains(character) {
                unitSeconds = ["s": 1, "m": 60, "h": 3600, "d": 86400][character] ?? 1
                rest = rest.dropFirst()
            } else if rest.isEmpty, total == .zero {
                unitSeconds = 1  // bare seconds
            } else {
                return nil
            }
            let seconds = value * unitSeconds
            guard seconds < 1e12 else { return nil }
            total += .nanoseconds(Int64((seconds * 1e9).rounded()))
        }
        return total
    }

    public static var defaultCompletionKind: CompletionKind { .default }
}

/// A byte-size option: `1048576`, `512KiB`, `64MiB`, `2GiB`, `1GB`, `500MB`.
public struct ByteSizeOption: ExpressibleByArgument, Sendable, Equatable, CustomStringConvertible {
    public let bytes: Int
    public let description: String

    public init?(argument: String) {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
                                      ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
                                      ("B", 1)]
        var number = Substring(argument)
        var multiplier = 1
        for (suffix, value) in units where argument.hasSuffix(suffix) {
            number = argument.dropLast(suffix.count)
            multiplier = value
            break
        }
        guard let count = Int(number), count >= 0 else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        self.bytes = bytes
        self.description = argument
    }
}

extension HostPort: ExpressibleByArgument {}

/// Help text shared by the commands whose options take durations and sizes.
enum OptionHelp {
    static let values = """
        DURATION is bare seconds (30, 1.5) or a number with ms, s, m, h or d (500ms, 5m, 1h30m, 7d). SIZE is bytes \
        or a number with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024): 512MiB, 2GB. \
        Every option can also come from the environment as VALKEYFLIGHT_<OPTION> (--max-memory 1GiB is \
        VALKEYFLIGHT_MAX_MEMORY=1GiB); flags take 1, true or yes.
        """
}
