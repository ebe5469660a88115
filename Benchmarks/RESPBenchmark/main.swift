// resp-bench: the RESP client under redis-benchmark-like load.
//   resp-bench [--valkey URL] [--clients N] [--pipeline P] [--requests N] [--command set|get|evalsha]
import Glibc
import RESP

var arguments = CommandLine.arguments.dropFirst()
var url = "valkey://127.0.0.1:6379"
var clients = 50
var pipeline = 1
var requests = 100_000
var command = RESPBenchmark.Command.set

func usage(_ problem: String) -> Never {
    print(
        "resp-bench: \(problem)\n"
            + "usage: resp-bench [--valkey URL] [--clients N] [--pipeline P] [--requests N] [--command set|get|evalsha]"
    )
    exit(2)
}

while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { usage("\(flag) needs a value") }
    switch flag {
    case "--valkey": url = value
    case "--clients": clients = Int(value) ?? 0
    case "--pipeline": pipeline = Int(value) ?? 0
    case "--requests": requests = Int(value) ?? 0
    case "--command": command = RESPBenchmark.Command(rawValue: value) ?? { usage("unknown command \(value)") }()
    default: usage("unknown option \(flag)")
    }
}
guard clients > 0, pipeline > 0, requests > 0 else { usage("--clients, --pipeline and --requests must be positive") }

do {
    var configuration = try RESPConfiguration(url: url)
    configuration.keepAliveInterval = nil
    let report = try await RESPBenchmark(
        configuration: configuration, clients: clients, pipeline: pipeline, requests: requests, command: command
    ).run()
    print(report)
} catch {
    print("resp-bench: \(error)")
    exit(1)
}
