import Node

// coordinator-bench [--valkey URL] [--batches N] [--concurrency C] [--claim N]: register + claim + complete
// through the coordinator alone; without --valkey it starts a private valkey-server (EmbeddedValkeyServer).
var url: String?
var batches = 100_000
var concurrency = 64
var claimLimit = 1
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--valkey": url = arguments.popFirst()
    case "--batches": batches = Int(arguments.popFirst() ?? "") ?? batches
    case "--concurrency": concurrency = Int(arguments.popFirst() ?? "") ?? concurrency
    case "--claim": claimLimit = Int(arguments.popFirst() ?? "") ?? claimLimit
    default: fatalError("unknown argument \(argument)")
    }
}
var server: EmbeddedValkeyServer?
if url == nil {
    let started = try await EmbeddedValkeyServer.start(
        binary: try EmbeddedValkeyServer.locateBinary(explicitPath: nil), directory: nil, appendOnly: false)
    server = started
    url = started.url
}
let valkey = try await ValkeyConnection.connect(url ?? "")
// Warm-up (script loading, connections).
_ = try await runCoordinatorBenchmark(
    valkey: valkey, batches: min(2000, batches), concurrency: concurrency, claimLimit: claimLimit)
let result = try await runCoordinatorBenchmark(
    valkey: valkey, batches: batches, concurrency: concurrency, claimLimit: claimLimit)
print(result.summary)
valkey.close()
await server?.stop()
