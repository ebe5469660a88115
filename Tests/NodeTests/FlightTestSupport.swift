import Foundation
import TestProcessSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking `body` (a wait on a child process or a pipe) on a thread of its own and resumes the caller
/// when it returns, so that async tests never block the cooperative pool with it.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await HelperThread.run(body)
}

/// ``offPool(_:)`` for a body that cannot throw.
func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await HelperThread.run(body)
}

/// A child process whose stdout can be read line by line while it runs; stderr is collected. A wrapper of
/// TestProcessSupport's ``SpawnedProcess`` (posix_spawn, its own process group, pipes drained by threads of its
/// own, so a chatty child never blocks on a full pipe and no wait holds a thread of the cooperative pool).
final class TestChildProcess: Sendable {
    /// The child itself (`pid`, `exitCode`, `kill()`, …).
    let spawned: SpawnedProcess
    let command: String

    /// Whether the child still runs, as `process.isRunning` (the name tests used with Foundation's `Process`).
    struct Status: Sendable {
        fileprivate let spawned: SpawnedProcess
        var isRunning: Bool { self.spawned.isRunning }
        var processIdentifier: Int32 { self.spawned.pid }
    }

    var process: Status { Status(spawned: self.spawned) }

    /// Starts `executable` with `arguments`; `environment` is added to this process's environment. stdin,
    /// stdout and stderr are pipes.
    init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        self.command = ([executable.path] + arguments).joined(separator: " ")
        self.spawned = try SpawnedProcess.spawn(ChildCommand(executable.path, arguments, environment: environment))
    }

    var isRunning: Bool { self.spawned.isRunning }

    var pid: Int32 { self.spawned.pid }

    var stdout: String { self.spawned.stdoutText }
    var stderr: String { self.spawned.stderrText }

    /// The next whole stdout line (without the newline), or nil if none arrives within `seconds` (or stdout
    /// ended first); waits suspended, holding no thread (use this one from async tests).
    func nextLine(within seconds: Double) async -> String? {
        await self.spawned.nextLine(within: .seconds(seconds))
    }

    /// The next whole stdout line (without the newline), or nil if none arrives within `timeout` seconds.
    /// Blocks the calling thread: async tests use ``nextLine(within:)``.
    func nextLine(timeout: Double) -> String? {
        self.spawned.nextLineBlocking(timeout: .seconds(timeout))
    }

    /// Queues `text` for the child's stdin.
    func write(_ text: String) {
        self.spawned.write(Array(text.utf8))
    }

    /// Closes the child's stdin once what was written reached it.
    func closeInput() {
        self.spawned.closeInput()
    }

    /// Waits up to `seconds` until stderr contains `text`, suspended (use this one from async tests).
    func waitForStderr(containing text: String, within seconds: Double) async -> Bool {
        await self.spawned.waitForOutput(containing: text, onStderr: true, within: .seconds(seconds))
    }

    /// Waits up to `timeout` seconds until stderr contains `text`. Blocks the calling thread.
    func waitForStderr(containing text: String, timeout: Double) -> Bool {
        self.spawned.waitForOutputBlocking(containing: text, onStderr: true, timeout: .seconds(timeout))
    }

    /// Sends `signal` to the child (not its group) while it runs.
    func send(_ signal: Int32) {
        self.spawned.send(signal)
    }

    /// Waits up to `seconds` for the child to exit; true if it did. Its output is complete then. Waits
    /// suspended, holding no thread (use this one from async tests).
    @discardableResult
    func waitForExit(within seconds: Double) async -> Bool {
        await self.spawned.waitForExit(within: .seconds(seconds))
    }

    /// Waits up to `timeout` seconds for the child to exit; true if it did. Its output is complete then. Blocks
    /// the calling thread: async tests use ``waitForExit(within:)``.
    @discardableResult
    func waitForExit(timeout: Double) -> Bool {
        self.spawned.waitForExitBlocking(timeout: .seconds(timeout))
    }

    /// Exit status if the child exited normally (not by a signal).
    var exitStatus: Int32? { self.spawned.exitCode }

    /// SIGKILL to the child's whole process group if it still runs (cleanup after a failed test, in `defer`),
    /// then waits until it is reaped (quick: SIGKILL cannot be caught; the reaping happens on the child's own
    /// thread, so this never waits for the cooperative pool).
    func terminate() {
        self.spawned.killBlocking()
    }
}

/// A `valkeyflight flight` process on a free loopback port.
final class FlightServerProcess: @unchecked Sendable {
    let child: TestChildProcess
    /// `grpc` or `grpc+tls`, from the listening line.
    let scheme: String
    let host: String
    let port: Int
    var url: String { "\(self.scheme)://\(self.host):\(self.port)" }

    struct Stop {
        var exited: Bool
        var status: Int32?
        var seconds: Double
        var stderr: String
    }

    private init(child: TestChildProcess, scheme: String, host: String, port: Int) {
        self.child = child
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// Starts `valkeyflight flight --listen 127.0.0.1:0 ARGUMENTS…` and waits for its `listening on …` line: the
    /// server binds port 0 itself and reports the port, so no other process can take it first.
    static func start(_ arguments: [String] = []) async throws -> FlightServerProcess {
        let child = try TestChildProcess(CLI.binary, ["flight", "--listen", "127.0.0.1:0"] + arguments)
        guard let line = await child.nextLine(within: 20) else {
            child.terminate()
            throw FlightTestError("no listening line from \(child.command); stderr: \(child.stderr)")
        }
        guard let match = line.wholeMatch(of: /listening on (grpc|grpc\+tls):\/\/([0-9.]+):([0-9]+)/),
              let port = Int(match.3), port > 0
        else {
            child.terminate()
            throw FlightTestError("unexpected first stdout line \(line.debugDescription); stderr: \(child.stderr)")
        }
        return FlightServerProcess(child: child, scheme: String(match.1), host: String(match.2), port: port)
    }

    /// Sends `signal` and waits up to `within` seconds for the process to exit (then SIGKILLs it).
    /// (8 s: under the node's 10 s drain grace, so a server that waits for something is told apart from a slow
    /// but prompt exit on a loaded machine.)
    func stop(_ signal: Int32 = SIGTERM, within: Double = 8) async -> Stop {
        let started = Date()
        self.child.send(signal)
        let exited = await self.child.waitForExit(within: within)
        let seconds = Date().timeIntervalSince(started)
        if !exited { self.child.terminate() }
        return Stop(exited: exited, status: exited ? self.child.exitStatus : nil, seconds: seconds, stderr: self.child.stderr)
    }

    /// Runs `body` against a fresh server, then stops it with SIGTERM and expects exit status 0 within 8 s. The
    /// server is killed on every path out of `body`.
    static func with<T>(_ arguments: [String] = [], sourceLocation: SourceLocation = #_sourceLocation,
                        _ body: (FlightServerProcess) async throws -> T) async throws -> T {
        let server = try await FlightServerProcess.start(arguments)
        defer { server.child.terminate() }
        let result = try await body(server)
        let stop = await server.stop()
        #expect(stop.exited && stop.status == 0,
                "server did not exit 0 within 8 s of SIGTERM (exited: \(stop.exited), status: \(String(describing: stop.status))); stderr:\n\(stop.stderr)",
                sourceLocation: sourceLocation)
        return result
    }
}

struct FlightTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// pyarrow, through `Tests/Fixtures/Flight/pyarrow_client.py`.
enum PyArrow {
    /// `$VALKEYFLIGHT_PYTHON`, else `<package root>/.venv/bin/python`.
    static var python: URL {
        if let path = ProcessInfo.processInfo.environment["VALKEYFLIGHT_PYTHON"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        return CLI.packageRoot.appendingPathComponent(".venv/bin/python")
    }

    static let fixtures = CLI.packageRoot.appendingPathComponent("Tests/Fixtures")
    static let script = fixtures.appendingPathComponent("Flight/pyarrow_client.py")

    static func start(_ arguments: [String]) throws -> TestChildProcess {
        guard FileManager.default.isExecutableFile(atPath: self.python.path) else {
            throw FlightTestError("no Python at \(self.python.path): create the venv with pyarrow and grpcio or set VALKEYFLIGHT_PYTHON")
        }
        return try TestChildProcess(self.python, [self.script.path] + arguments, environment: ["PYTHONDONTWRITEBYTECODE": "1"])
    }

    /// Runs a subcommand to completion (killed after `timeout` seconds); expects exit 0 and returns the PyJSON
    /// object of its last stdout line.
    static func run(_ arguments: [String], timeout: Double = 60, sourceLocation: SourceLocation = #_sourceLocation) async throws -> PyJSON {
        let child = try self.start(arguments)
        child.closeInput()
        defer { child.terminate() }
        guard await child.waitForExit(within: timeout) else {
            child.terminate()
            throw FlightTestError("pyarrow_client.py \(arguments.first ?? "") did not finish within \(timeout) s; stderr:\n\(child.stderr)")
        }
        try #require(child.exitStatus == 0, "pyarrow_client.py \(arguments.joined(separator: " ")) failed:\n\(child.stderr)",
                     sourceLocation: sourceLocation)
        return try PyJSON.lastLine(of: child.stdout)
    }
}

/// A parsed PyJSON value with convenient lookups for `#expect`.
enum PyJSON: Equatable, Sendable, Decodable, CustomStringConvertible, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByNilLiteral {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([PyJSON])
    case object([String: PyJSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([PyJSON].self) { self = .array(value) }
        else { self = .object(try container.decode([String: PyJSON].self)) }
    }

    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: PyJSON...) { self = .array(elements) }
    init(nilLiteral: ()) { self = .null }

    static func lastLine(of text: String) throws -> PyJSON {
        guard let line = text.split(separator: "\n").last else { throw FlightTestError("no PyJSON output") }
        return try JSONDecoder().decode(PyJSON.self, from: Data(line.utf8))
    }

    /// Member lookup; `.null` when absent or not an object.
    subscript(key: String) -> PyJSON {
        if case let .object(members) = self { return members[key] ?? .null }
        return .null
    }

    subscript(index: Int) -> PyJSON {
        if case let .array(items) = self, items.indices.contains(index) { return items[index] }
        return .null
    }

    var string: String? { if case let .string(value) = self { value } else { nil } }
    var int: Int? { if case let .int(value) = self { value } else { nil } }
    var double: Double? {
        switch self {
        case let .int(value): Double(value)
        case let .double(value): value
        default: nil
        }
    }
    var array: [PyJSON] { if case let .array(items) = self { items } else { [] } }
    var object: [String: PyJSON] { if case let .object(members) = self { members } else { [:] } }
    var isNull: Bool { self == .null }

    var description: String {
        switch self {
        case .null: "null"
        case let .bool(value): "\(value)"
        case let .int(value): "\(value)"
        case let .double(value): "\(value)"
        case let .string(value): value.debugDescription
        case let .array(items): "[" + items.map(\.description).joined(separator: ", ") + "]"
        case let .object(members):
            "{" + members.sorted { $0.key < $1.key }.map { "\($0.key.debugDescription): \($0.value)" }.joined(separator: ", ") + "}"
        }
    }
}
