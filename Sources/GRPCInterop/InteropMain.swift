import GRPCInteropService
import GRPCWire

/// `grpc-interop server --port N [--tls CERT KEY]`: serves grpc.testing.TestService until killed.
@main
struct InteropMain {
    static func main() async throws {
        var args = CommandLine.arguments.dropFirst()
        guard args.first == "server" else {
            print("usage: grpc-interop server [--port N] [--host H] [--tls CERT KEY]")
            return
        }
        args = args.dropFirst()
        var config = GRPCServerConfiguration(host: "127.0.0.1", port: 0)
        while let a = args.first {
            args = args.dropFirst()
            switch a {
            case "--port": config.port = Int(args.popFirst() ?? "") ?? 0
            case "--host": config.host = args.popFirst() ?? config.host
            case "--tls":
                let cert = args.popFirst() ?? ""
                let key = args.popFirst() ?? ""
                config.tls = .server(certificateChain: cert, privateKey: key)
            default:
                print("unknown argument \(a)")
                return
            }
        }
        let server = try GRPCServer(configuration: config, router: InteropTestService.router())
        print("listening on \(config.host):\(server.port)")
        while true { try await Task.sleep(for: .seconds(3600)) }
    }
}
