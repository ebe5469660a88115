import GRPCInteropService
import GRPCWire
import Glibc

/// `grpc-interop server [--port N] [--host H] [--tls CERT KEY]` serves grpc.testing.TestService until killed;
/// `grpc-interop client --port N [--host H] [--tls CA SERVER_NAME] [--cases a,b]` runs the interop cases.
@main
struct InteropMain {
    static func main() async throws {
        var args = CommandLine.arguments.dropFirst()
        let mode = args.popFirst() ?? ""
        var host = "127.0.0.1"
        var port = 0
        var tls: [String] = []
        var cases = InteropClientCases.all
        while let a = args.popFirst() {
            switch a {
            case "--port": port = Int(args.popFirst() ?? "") ?? 0
            case "--host": host = args.popFirst() ?? host
            case "--tls": tls = [args.popFirst() ?? "", args.popFirst() ?? ""]
            case "--cases", "--case": cases = (args.popFirst() ?? "").split(separator: ",").map(String.init)
            default:
                print("unknown argument \(a)")
                return
            }
        }
        switch mode {
        case "server":
            var config = GRPCServerConfiguration(host: host, port: port)
            if tls.count == 2 { config.tls = .server(certificateChain: tls[0], privateKey: tls[1]) }
            let server = try GRPCServer(configuration: config, router: InteropTestService.router())
            let line = "PORT \(server.port)\n"
            _ = line.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
            while true { try await Task.sleep(for: .seconds(3600)) }
        case "client":
            var config = GRPCClientConfiguration(host: host, port: port)
            if tls.count == 2 { config.tls = .client(trustRoots: tls[0], serverName: tls[1]) }
            let channel = try GRPCChannel(configuration: config)
            var failed = 0
            for name in cases {
                do {
                    try await InteropClientCases.run(name, channel: channel)
                    print("PASS \(name)")
                } catch {
                    failed += 1
                    print("FAIL \(name): \(error)")
                }
            }
            channel.close()
            if failed > 0 { throw InteropFailureCount(count: failed) }
        default:
            print(
                "usage: grpc-interop server|client [--host H] [--port N] [--tls CERT KEY | --tls CA NAME] [--cases a,b]"
            )
        }
    }
}

struct InteropFailureCount: Error, CustomStringConvertible {
    let count: Int
    var description: String { "\(self.count) interop case(s) failed" }
}
