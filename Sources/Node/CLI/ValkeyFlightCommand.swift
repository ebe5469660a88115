public import ArgumentParser
internal import GRPCWire

/// The `valkeyflight` command: every mode and client command of ../shared/CONTRACT.md §1 hangs below it.
public struct ValkeyFlightCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "valkeyflight",
        abstract: "Move and process Apache Arrow data: Flight server, Valkey coordinator and workers in one binary.",
        version: ValkeyFlightCommand.versionText,
        subcommands: [IPCCommand.self]
    )

    public init() {}

    static var versionText: String {
        "valkeyflight 0.1.0 (libnghttp2 \(LinkedLibraries.nghttp2Version), \(LinkedLibraries.openSSLVersion))"
    }
}
