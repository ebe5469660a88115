import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking `body` (a wait on a child process or a pipe) on a thread of its own and resumes the caller
/// when it returns, so that async tests never block the cooperative pool with it.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// ``offPool(_:)`` for a body that cannot throw.
func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

/// A child process whose stdout can be read line by line while it runs; stderr is collected.
/// Pipes are drained by background threads, so a chatty child never blocks on a full pipe.
final class TestChildProcess: @unchecked Sendable {
    let process = Process()
    let command: String
    private let input = Pipe()
    private let condition = NSCondition()
    private var stdoutBytes: [UInt8] = []
    private var stderrBytes: [UInt8] = []
    private var stdoutOffset = 0
    private var openStreams = 2

    /// Starts `executable` with `arguments`; `environment` is added to this process's environment.
    init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        self.command = ([executable.path] + arguments).joined(separator: " ")
        self.process.executableURL = executable
        self.process.arguments = arguments
        self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        let errors = Pipe()
        self.process.standardInput = self.input
        self.process.standardOutput = output
        self.process.standardError = errors
        try self.process.run()
        self.drain(output.fileHandleForReading, isStdout: true)
        self.drain(errors.fileHandleForReading, isStdout: false)
    }

    private func drain(_ handle: FileHandle, isStdout: Bool) {
        let thread = Thread { [self] in
            while true {
                let data = handle.availableData
                self.condition.lock()
                if data.isEmpty {
                    self.openStreams -= 1
                } else if isStdout {
                    self.stdoutBytes.append(contentsOf: data)
                } else {
                    self.stderrBytes.append(contentsOf: data)
                }
                self.condition.broadcast()
                self.condition.unlock()
                if data.isEmpty { return }
            }
        }
        thread.start()
    }

    var pid: Int32 { self.process.processIdentifier }

    var stdout: String { self.condition.withLock { String(decoding: self.stdoutBytes, as: UTF8.self) } }
    var stderr: String { self.condition.withLock { String(decoding: self.stderrBytes, as: UTF8.self) } }

    /// The next whole stdout line (without the newline), or nil if none arrives within `seconds`; waits off the
    /// cooperative pool (use this one from async tests).
    func nextLine(within seconds: Double) async -> String? {
        await offPool { self.nextLine(timeout: seconds) }
    }

    /// The next whole stdout line (without the newline), or nil if none arrives within `timeout` seconds.
    /// Blocks the calling thread: async tests use ``nextLine(within:)``.
    func nextLine(timeout: Double) -> String? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        self.condition.lock()
        defer { self.condition.unlock() }
        while true {
            if let newline = self.stdoutBytes[self.stdoutOffset...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: self.stdoutBytes[self.stdoutOffset..<newline], as: UTF8.self)
                self.stdoutOffset = newline + 1
                return line
            }
            if self.openStreams == 0 && !self.process.isRunning { return nil }
            if !self.condition.wait(until: min(deadline, Date(timeIntervalSinceNow: 0.1))) && Date() >= deadline {
                return nil
            }
        }
    }

    func write(_ text: String) {
        try? self.input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
    }

    func closeInput() {
        try? self.input.fileHandleForWriting.close()
    }

    /// ``waitForStderr(containing:timeout:)`` off the cooperative pool (use this one from async tests).
    func waitForStderr(containing text: String, within seconds: Double) async -> Bool {
        await offPool { self.waitForStderr(containing: text, timeout: seconds) }
    }

    /// Waits up to `timeout` seconds until stderr contains `text` (woken by each chunk of output). Blocks the
    /// calling thread.
    func waitForStderr(containing text: String, timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        self.condition.lock()
        defer { self.condition.unlock() }
        while !String(decoding: self.stderrBytes, as: UTF8.self).contains(text) {
            if Date() >= deadline { return false }
            _ = self.condition.wait(until: min(deadline, Date(timeIntervalSinceNow: 0.1)))
        }
        return true
    }

    func send(_ signal: Int32) {
        if self.process.isRunning { kill(self.pid, signal) }
    }

    /// Waits up to `timeout` seconds for the child to exit; true if it did. Its output is complete then.
    /// Waits off the cooperative pool (use this one from async tests).
    @discardableResult
    func waitForExit(within seconds: Double) async -> Bool {
        await offPool { self.waitForExit(timeout: seconds) }
    }

    /// Waits up to `timeout` seconds for the child to exit; true if it did. Its output is complete then. Blocks
    /// the calling thread: async tests use ``waitForExit(within:)``.
    @discardableResult
    func waitForExit(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while self.process.isRunning {
            if Date() >= deadline { return false }
            usleep(2_000)
        }
        // The pipes reach end of file once the child is gone (unless it left a grandchild holding them).
        let drained = Date(timeIntervalSinceNow: 5)
        self.condition.lock()
        while self.openStreams > 0 && Date() < drained { _ = self.condition.wait(until: Date(timeIntervalSinceNow: 0.1)) }
        self.condition.unlock()
        return true
    }

    /// Exit status if the child exited normally (not by a signal).
    var exitStatus: Int32? {
        self.process.terminationReason == .exit ? self.process.terminationStatus : nil
    }

    /// SIGKILL if still running (cleanup after a failed test), then reaps it (quick: SIGKILL cannot be caught).
    func terminate() {
        guard self.process.isRunning else { return }
        kill(self.pid, SIGKILL)
        self.waitForExit(timeout: 10)
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
