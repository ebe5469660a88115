/// Log lines on stderr, as text (`2026-11-26T19:30:00.123Z info message key=value`) or one JSON object per line.
package struct NodeLogger: Sendable {
    package enum Level: Int, Comparable, Sendable {
        case debug, info, warning, error, off
        package static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
        var name: String { ["debug", "info", "warning", "error", "off"][self.rawValue] }
    }

    let level: Level
    let json: Bool

    /// - Parameters:
    ///   - level: trace, debug, info, notice, warning (or warn), error, critical (trace logs as debug, notice
    ///     as info, critical as error).
    ///   - format: text or json.
    package init(level: String, format: String) throws(NodeError) {
        let levels: [String: Level] = ["trace": .debug, "debug": .debug, "info": .info, "notice": .info,
                                       "warning": .warning, "warn": .warning, "error": .error, "critical": .error]
        guard let parsed = levels[level] else {
            throw .invalidArgument("--log-level must be trace, debug, info, notice, warning, error or critical, got '\(level)'")
        }
        guard format == "text" || format == "json" else {
            throw .invalidArgument("--log-format must be text or json, got '\(format)'")
        }
        self.level = parsed
        self.json = format == "json"
    }

    private init(level: Level) {
        self.level = level
        self.json = false
    }

    /// A logger that writes nothing (library use and tests).
    package static let discard = NodeLogger(level: .off)

    package func debug(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { self.log(.debug, message, fields) }
    package func info(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { self.log(.info, message, fields) }
    package func warning(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { self.log(.warning, message, fields) }
    package func error(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { self.log(.error, message, fields) }

    package func log(_ level: Level, _ message: String, _ fields: KeyValuePairs<String, String>) {
        guard level >= self.level, level != .off else { return }
        let time = RFC3339.format(milliseconds: WallClock.milliseconds())
        let line: String
        if self.json {
            let extra = fields.map { ",\(JSONText.quote($0.key)):\(JSONText.quote($0.value))" }.joined()
            line = "{\"time\":\"\(time)\",\"level\":\"\(level.name)\",\"message\":\(JSONText.quote(message))\(extra)}"
        } else {
            let extra = fields.map { " \($0.key)=\($0.value)" }.joined()
            line = "\(time) \(level.name) \(message)\(extra)"
        }
        LogWriter.shared.enqueue(line + "\n")
    }

    /// Milliseconds of `duration` as a log field value, e.g. `12ms`.
    package static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let ms = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        return ms < 10 ? String(Double(Int(ms * 100)) / 100) + "ms" : String(Int(ms.rounded())) + "ms"
    }

    /// Writes every queued line before the process exits (waits at most a second).
    package static func flush() { LogWriter.shared.flush() }
}

/// RFC 3339 timestamps in UTC without Foundation.
package enum RFC3339 {
    package static func format(milliseconds: Int64) -> String {
        let seconds = milliseconds / 1000
        let millis = Int(milliseconds % 1000)
        var days = seconds / 86400
        let secondOfDay = Int(seconds % 86400)
        // Civil-from-days (Howard Hinnant's algorithm).
        days += 719_468
        let era = days / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * monthPrime + 2) / 5 + 1)
        let month = Int(monthPrime < 10 ? monthPrime + 3 : monthPrime - 9)
        let year = Int(yearOfEra + era * 400 + (month <= 2 ? 1 : 0))
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):"
            + "\(pad(secondOfDay % 60, 2)).\(pad(millis, 3))Z"
    }
}
