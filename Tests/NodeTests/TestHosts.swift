import Foundation
import Synchronization
import Testing
import TestProcessSupport

#if canImport(Glibc)
import Glibc
#endif

/// Test hosts: network namespaces `vf-PIDsSEQ-hN` joined by a bridge in their own hub namespace
/// `vf-PIDsSEQ-hub`, host N with `10.213.K.N/24` on its `eth0` (an address that exists only inside them) and
/// loopback up. Processes run inside a host through `ip netns exec`; ``TestHost/cut()`` takes the host's bridge
/// port down (its packets vanish, nobody sees a reset), ``TestHost/heal()`` brings it back. `scripts/hosts` makes
/// the same layout from the shell and removes sets a killed test process left behind.
enum TestHosts {
    /// Why test hosts cannot be made on this machine (nil: they can); found once by making a namespace.
    static let unavailable: String? = Self.probe()

    /// The `.enabled(if:)` comment of tests that need hosts.
    static var skipReason: Comment { Comment(rawValue: "test hosts unavailable: \(Self.unavailable ?? "")") }

    static let ipTool: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    private static let sequence = Atomic<Int>(0)

    private static func probe() -> String? {
        guard getuid() == 0 else { return "network namespaces need root (uid is \(getuid()))" }
        guard Self.ipTool != nil else { return "no `ip` command (apt-get install iproute2)" }
        let name = "vf-\(getpid())probe"
        do {
            try Self.ip(["netns", "add", name])
            try? Self.ip(["netns", "delete", name])
            return nil
        } catch {
            return "`ip netns add \(name)` failed: \(error)"
        }
    }

    /// Runs `ip ARGS…` to completion; throws with its stderr when it fails.
    static func ip(_ arguments: [String]) throws {
        guard let tool = Self.ipTool else { throw FlightTestError("no `ip` command") }
        let result = try Self.run(tool, arguments)
        guard result.status == 0 else {
            throw FlightTestError("ip \(arguments.joined(separator: " ")): exit \(result.status): \(result.output)")
        }
    }

    /// `ip ARGS…`'s output (stdout and stderr), whatever its exit status.
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        // posix_spawn, not Foundation's Process: its FileHandle read trapped on EINTR ('try!') in a full run.
        let command = ChildCommand(executable, arguments, stdin: .discard, stdout: .pipe, stderr: .stdout)
        let result = try SpawnedProcess.runBlocking(command, timeout: .seconds(60))
        return (result.status, result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Namespaces whose name starts with `prefix`.
    static func namespaces(prefix: String) -> [String] {
        guard let tool = Self.ipTool, let listed = try? Self.run(tool, ["netns", "list"]) else { return [] }
        return listed.output.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
            .filter { $0.hasPrefix(prefix) }
    }

    /// A fresh set prefix and its subnet octet.
    static func nextSet() -> (prefix: String, subnet: Int) {
        let sequence = Self.sequence.add(1, ordering: .relaxed).newValue
        return ("vf-\(getpid())s\(sequence)", 1 + sequence % 250)
    }
}

/// One test host: a network namespace with one address.
struct TestHost: Sendable {
    /// 1-based.
    let index: Int
    let namespace: String
    /// `10.213.K.N`.
    let address: String
    let hub: String
    let set: TestHostSet

    /// Starts `executable ARGS…` inside this host (through `ip netns exec`); it is killed when the hosts go.
    func spawn(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> TestChildProcess {
        guard let tool = TestHosts.ipTool else { throw FlightTestError("no `ip` command") }
        let child = try TestChildProcess(URL(fileURLWithPath: tool), ["netns", "exec", self.namespace, executable.path] + arguments,
                                         environment: environment)
        self.set.track(child)
        return child
    }

    /// Starts `valkeyflight ARGS…` (the debug build) inside this host.
    func valkeyflight(_ arguments: [String], environment: [String: String] = [:]) throws -> TestChildProcess {
        try self.spawn(CLI.binary, arguments, environment: environment)
    }

    /// Runs `valkeyflight ARGS…` inside this host to completion (at most `within` seconds, then killed).
    func runValkeyflight(_ arguments: [String], within seconds: Double = 30) async throws -> (status: Int32?, stdout: String, stderr: String) {
        let child = try self.valkeyflight(arguments)
        child.closeInput()
        if !(await child.waitForExit(within: seconds)) {
            child.terminate()
            throw FlightTestError("valkeyflight \(arguments.joined(separator: " ")) on \(self.namespace) still running after \(seconds) s")
        }
        return (child.exitStatus, child.stdout, child.stderr)
    }

    /// Cuts this host off: its port on the bridge goes down, so its packets are dropped in both directions
    /// (established connections see silence, not a reset).
    func cut() throws {
        try TestHosts.ip(["-n", self.hub, "link", "set", "h\(self.index)", "down"])
    }

    /// Reconnects a cut host.
    func heal() throws {
        try TestHosts.ip(["-n", self.hub, "link", "set", "h\(self.index)", "up"])
    }
}

/// The processes started in a set of hosts, killed when the set is removed.
final class TestHostSet: Sendable {
    let prefix: String
    private let children = Mutex<[TestChildProcess]>([])

    init(prefix: String) {
        self.prefix = prefix
    }

    func track(_ child: TestChildProcess) {
        self.children.withLock { $0.append(child) }
    }

    /// Kills every process started here and every other process still inside the namespaces, then deletes them.
    func remove() {
        for child in self.children.withLock({ $0 }) { child.terminate() }
        for namespace in TestHosts.namespaces(prefix: self.prefix + "-") {
            if let tool = TestHosts.ipTool, let pids = try? TestHosts.run(tool, ["netns", "pids", namespace]) {
                for pid in pids.output.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            }
            try? TestHosts.ip(["netns", "delete", namespace])
        }
    }
}

/// Makes `count` test hosts for `body` and removes them (and every process in them) afterwards, also when `body`
/// throws. Fails when the machine cannot make namespaces: tests check ``TestHosts/unavailable`` first.
func withTestHosts<T>(count: Int, _ body: ([TestHost]) async throws -> T) async throws -> T {
    precondition((1...200).contains(count))
    let (prefix, subnet) = TestHosts.nextSet()
    let set = TestHostSet(prefix: prefix)
    let hub = "\(prefix)-hub"
    var hosts: [TestHost] = []
    do {
        try await offPool {
            try TestHosts.ip(["netns", "add", hub])
            try TestHosts.ip(["-n", hub, "link", "add", "br0", "type", "bridge"])
            try TestHosts.ip(["-n", hub, "link", "set", "br0", "up"])
        }
        for index in 1...count {
            let namespace = "\(prefix)-h\(index)"
            let address = "10.213.\(subnet).\(index)"
            try await offPool {
                try TestHosts.ip(["netns", "add", namespace])
                try TestHosts.ip(["-n", namespace, "link", "set", "lo", "up"])
                try TestHosts.ip(["link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", "h\(index)", "netns", hub])
                try TestHosts.ip(["-n", hub, "link", "set", "h\(index)", "master", "br0"])
                try TestHosts.ip(["-n", hub, "link", "set", "h\(index)", "up"])
                try TestHosts.ip(["-n", namespace, "addr", "add", "\(address)/24", "dev", "eth0"])
                try TestHosts.ip(["-n", namespace, "link", "set", "eth0", "up"])
            }
            hosts.append(TestHost(index: index, namespace: namespace, address: address, hub: hub, set: set))
        }
        let result = try await body(hosts)
        await offPool { set.remove() }
        return result
    } catch {
        await offPool { set.remove() }
        throw error
    }
}
