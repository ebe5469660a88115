internal import Node
internal import FlightRPC
internal import ArgumentParser
internal import Glibc

/// Option defaults from the environment: every option `--some-option` may come from
/// `VALKEYFLIGHT_SOME_OPTION` (the ValkeyFlight contract (CONTRACT.md) §1).
enum Environment {
    /// The value of `VALKEYFLIGHT_<name>`, if set.
    static func value(for name: String) -> String? {
        guard let raw = getenv("VALKEYFLIGHT_" + name) else { return nil }
        return String(cString: raw)
    }

    /// The command-line value if given, else `VALKEYFLIGHT_<name>` parsed like the option, else nil.
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` when the environment value does not parse.
    static func resolve<T: ExpressibleByArgument>(_ value: T?, _ name: String) throws(NodeError) -> T? {
        if let value { return value }
        guard let text = self.value(for: name) else { return nil }
        guard let parsed = T(argument: text) else {
            throw .invalidArgument("VALKEYFLIGHT_\(name)='\(text)' is not a valid value")
        }
        return parsed
    }

    /// As ``resolve(_:_:)`` with a default.
    static func resolve<T: ExpressibleByArgument>(_ value: T?, _ name: String, default defaultValue: T) throws(NodeError) -> T {
        try self.resolve(value, name) ?? defaultValue
    }
}

extension Environment {
    /// A boolean flag from `VALKEYFLIGHT_<name>`: `1`, `true` or `yes` (any case) turn it on.
    static func flag(_ name: String) -> Bool {
        guard let text = self.value(for: name)?.lowercased() else { return false }
        return ["1", "true", "yes", "on"].contains(text)
    }
}
