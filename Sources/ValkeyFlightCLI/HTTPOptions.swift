internal import Node
internal import FlightRPC
internal import ArgumentParser

/// `--http-listen` of the modes with a gRPC port (`all`, `flight`, `coordinator`).
struct HTTPOptions: ParsableArguments {
    @Option(help: "Serve HTTP (/metrics, /healthz, /readyz, /api, the dashboard at /) on HOST:PORT instead of the gRPC port (HTTP/1.1 and gRPC share it by default, with TLS too: ALPN tells them apart); 'off' turns HTTP off. (default: the gRPC port)")
    var httpListen: String?

    func apply(to configuration: inout NodeConfiguration) throws {
        guard let text = try Environment.resolve(self.httpListen, "HTTP_LISTEN") else { return }
        configuration.httpListen = try Self.parse(text)
    }

    static func parse(_ text: String) throws -> HTTPListen {
        if text == "off" { return .off }
        guard let address = HostPort(argument: text) else {
            throw NodeError.invalidArgument("--http-listen expects HOST:PORT or off, got '\(text)'")
        }
        return .address(address)
    }
}

/// `--listen` / `--http-listen` of `worker`, which has no gRPC port: HTTP is served only when one is given.
struct WorkerHTTPOptions: ParsableArguments {
    @Option(help: "Serve HTTP (/metrics, /healthz, /readyz, /api, the dashboard at /) on HOST:PORT; port 0 picks a free port (printed as 'listening on http://HOST:PORT'). (default: no socket)")
    var listen: HostPort?

    @Option(help: "The same as --listen for a worker; 'off' turns HTTP off.")
    var httpListen: String?

    func apply(to configuration: inout NodeConfiguration) throws {
        configuration.httpListen = .off
        if let listen = try Environment.resolve(self.listen, "LISTEN") { configuration.httpListen = .address(listen) }
        if let text = try Environment.resolve(self.httpListen, "HTTP_LISTEN") {
            configuration.httpListen = try HTTPOptions.parse(text)
        }
    }
}
