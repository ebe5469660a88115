internal import ArgumentParser
internal import GRPCWire

/// Options every long-running mode shares (../shared/CONTRACT.md §1).
struct NodeOptions: ParsableArguments {
    @Option(help: "Address to listen on, HOST:PORT; port 0 picks a free port. (default: 127.0.0.1:8815; env VALKEYFLIGHT_LISTEN)")
    var listen: HostPort?

    @Option(help: "Location advertised in FlightInfo, grpc://HOST:PORT. (default: the listen address with the bound port)")
    var advertise: String?

    @Option(help: "Log level: debug, info, warning, error. (default: info)")
    var logLevel: String?

    @Option(help: "Log format: text or json. (default: text)")
    var logFormat: String?

    func resolvedListen() throws -> HostPort {
        try Environment.resolve(self.listen, "LISTEN", default: HostPort(host: "127.0.0.1", port: 8815))
    }

    func logger() throws -> NodeLogger {
        let level = try Environment.resolve(self.logLevel, "LOG_LEVEL", default: "info")
        let format = try Environment.resolve(self.logFormat, "LOG_FORMAT", default: "text")
        return try NodeLogger(level: level, format: format)
    }
}

/// Options of a Flight server.
struct FlightServerOptions: ParsableArguments {
    @Option(help: "How long a stored batch lives. (default: 1h)")
    var ttl: DurationOption?

    @Option(help: "Most bytes of batches held; DoPut beyond it fails RESOURCE_EXHAUSTED. (default: no limit)")
    var maxMemory: ByteSizeOption?

    @Option(help: "TLS certificate chain (PEM); with --tls-key the server speaks grpc+tls.")
    var tlsCert: String?

    @Option(help: "TLS private key (PEM).")
    var tlsKey: String?

    @Option(help: "Turn on Handshake authentication with USER:PASS; other calls then need the bearer token.")
    var authBasic: String?

    func tls() throws -> TLSConfiguration? {
        let cert = try Environment.resolve(self.tlsCert, "TLS_CERT")
        let key = try Environment.resolve(self.tlsKey, "TLS_KEY")
        switch (cert, key) {
        case (nil, nil): return nil
        case let (cert?, key?): return .server(certificateChain: cert, privateKey: key)
        default: throw NodeError.invalidArgument("--tls-cert and --tls-key go together")
        }
    }
}

/// `valkeyflight flight`: the Flight server alone, a plain in-memory batch store.
struct FlightCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flight",
        abstract: "Run the Flight server: an in-memory store of Arrow batches (DoPut, DoGet, ListFlights, …).",
        discussion: "Prints 'listening on grpc://HOST:PORT' once it serves. Stops cleanly on SIGINT or SIGTERM."
    )

    @OptionGroup var node: NodeOptions
    @OptionGroup var server: FlightServerOptions

    func run() async throws {
        let log = try self.node.logger()
        let listen = try self.node.resolvedListen()
        let ttl = try Environment.resolve(self.server.ttl, "TTL", default: DurationOption(argument: "1h")!)
        let maxMemory = try Environment.resolve(self.server.maxMemory, "MAX_MEMORY")
        let tls = try self.server.tls()
        let auth = try Environment.resolve(self.server.authBasic, "AUTH_BASIC").map { try FlightBasicAuth(parsing: $0) }
        guard ttl.duration > .zero else { throw NodeError.invalidArgument("--ttl must be positive") }

        let store = BatchStore(maxMemory: maxMemory?.bytes ?? .max, ttl: ttl.duration)
        let location = AdvertisedLocation()
        let service = FlightStoreService(store: store, location: location)
        var configuration = GRPCServerConfiguration(host: listen.host, port: listen.port, tls: tls)
        configuration.maxReceiveMessageSize = Int(Int32.max)
        configuration.admission = FlightMemoryAdmission(store: store)
        let flight: FlightServer
        do {
            flight = try FlightServer(service: service, configuration: configuration, auth: auth)
        } catch {
            throw NodeError.invalidArgument("cannot serve on \(listen): \(error)")
        }
        let scheme = tls == nil ? "grpc" : "grpc+tls"
        let bound = HostPort(host: listen.host, port: flight.port)
        location.set(try Environment.resolve(self.node.advertise, "ADVERTISE") ?? "\(scheme)://\(bound)")
        NodeRuntime.printLine("listening on \(scheme)://\(bound)")
        log.info("flight server ready", ["location": location.uri, "ttl": ttl.description,
                                         "auth": auth == nil ? "off" : "basic", "tls": tls == nil ? "off" : "on"])

        let sweeper = Task {
            let interval = min(ttl.duration / 10, .seconds(1))
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                let removed = store.sweep()
                if removed > 0 { log.debug("expired batches removed", ["count": String(removed)]) }
            }
        }
        let signal = await NodeRuntime.waitForTermination()
        log.info("shutting down", ["signal": signal])
        sweeper.cancel()
        await flight.shutdown(gracePeriod: .seconds(10))
        log.info("stopped")
    }
}
