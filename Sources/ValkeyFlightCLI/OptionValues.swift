internal import Node
public import FlightRPC
public import ArgumentParser


/// A duration option: `500ms`, `30s`, `5m`, `1h`, `7d`, or combinations like `1h30m`.
public struct DurationOption: ExpressibleByArgument, Sendable, Equatable, CustomStringConvertible {
    public let duration: Duration
    public let description: String

    public init?(argument: String) {
        guard let duration = Self.parse(argument) else { return nil }
        self.duration = duration
        self.description = argument
    }

    static func parse(_ text: String) -> Duration? {
        var total = Duration.zero
        var digits = ""
        var rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        while let character = rest.first {
            if character.isASCII, character.isNumber {
                digits.append(character)
                rest = rest.dropFirst()
                continue
            }
            guard let value = Int64(digits) else { return nil }
            let unit: Duration
            if rest.hasPrefix("ms") {
                unit = .milliseconds(1)
                rest = rest.dropFirst(2)
            } else {
                switch character {
                case "s": unit = .seconds(1)
                case "m": unit = .seconds(60)
                case "h": unit = .seconds(3600)
                case "d": unit = .seconds(86400)
                default: return nil
                }
                rest = rest.dropFirst()
            }
            total += unit * value
            digits = ""
        }
        guard digits.isEmpty else { return nil }  // a number without a unit
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
