internal import Node
internal import FlightRPC
public import ArgumentParser
internal import GRPCWire
internal import Glibc

/// The `valkeyflight` command: every mode and client command of the ValkeyFlight contract (CONTRACT.md) §1 hangs below it.
public struct ValkeyFlightCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "valkeyflight",
        abstract: "Move and process Apache Arrow data: Flight server, Valkey coordinator and workers in one binary.",
        version: ValkeyFlightCommand.versionText,
        subcommands: [
            AllCommand.self, FlightCommand.self, CoordinatorCommand.self, WorkerCommand.self,
            SubmitCommand.self, StatusCommand.self, WaitCommand.self, GetCommand.self, ListCommand.self,
            RetryCommand.self, CancelCommand.self, StatsCommand.self, IPCCommand.self, BenchCommand.self,
        ]
    )

    public init() {}

    static var versionText: String {
        "valkeyflight 0.1.0 (libnghttp2 \(LinkedLibraries.nghttp2Version), \(LinkedLibraries.openSSLVersion))"
    }

    /// Parses the command line and runs the command. Help and version go to stdout with exit 0; any
    /// error is one line on stderr, `valkeyflight: error: …`, with a non-zero exit.
    public static func main() async {
        do {
            var command = try Self.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ExitCodeError {
            let line = "valkeyflight: error: \(error.message)\n"
            _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
            Glibc.exit(error.code)
        } catch {
            let code = Self.exitCode(for: error)
            if code == .success {
                print(Self.fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = Self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            let line = "valkeyflight: error: \(message)\n"
            _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
            Glibc.exit(code.rawValue == 0 ? 1 : code.rawValue)
        }
    }
}
