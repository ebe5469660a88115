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
        discussion: OptionHelp.values,
        version: ValkeyFlightCommand.versionText,
        subcommands: [
            AllCommand.self, FlightCommand.self, CoordinatorCommand.self, WorkerCommand.self,
            SubmitCommand.self, StatusCommand.self, WaitCommand.self, GetCommand.self, ListCommand.self,
            RetryCommand.self, CancelCommand.self, StatsCommand.self, TopCommand.self, QueueCommand.self, IPCCommand.self,
            BenchCommand.self,
        ]
    )

    public init() {}

    static var versionText: String {
        "valkeyflight 0.1.0 (libnghttp2 \(LinkedLibraries.nghttp2Version), \(LinkedLibraries.openSSLVersion))"
    }

    /// Parses the command line and runs the command. Help and version go to stdout with exit 0; any
    /// error is one line on stderr, `valkeyflight: error: …` — or, under `--json` (or `VALKEYFLIGHT_JSON=1`),
    /// one JSON object `{"error": "…"}` — with a non-zero exit.
    public static func main() async {
        OneMallocArena.reexecuteIfNeeded()
        do {
            var command = try Self.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ExitCodeError {
            Self.fail(error.message, code: error.code)
        } catch {
            let code = Self.exitCode(for: error)
            if code == .success {
                print(Self.fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = Self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            Self.fail(message, code: code.rawValue == 0 ? 1 : code.rawValue)
        }
    }

    /// Whether errors are reported as JSON: `--json` anywhere before `--`, or `VALKEYFLIGHT_JSON` set to a true value.
    static var jsonErrors: Bool {
        CommandLine.arguments.dropFirst().prefix { $0 != "--" }.contains("--json") || Environment.flag("JSON")
    }

    private static func fail(_ message: String, code: Int32) -> Never {
        let line = Self.jsonErrors ? "{\"error\":\(JSONText.quote(message))}\n" : "valkeyflight: error: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
        Glibc.exit(code)
    }
}
