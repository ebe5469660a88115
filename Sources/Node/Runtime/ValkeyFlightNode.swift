internal import FlightRPC
internal import GRPCWire

/// Composes the services of one long-running mode and runs them in one structured `run()`: Valkey (or the
/// embedded default), the Flight server, the worker pool and housekeeping; then waits for SIGINT/SIGTERM and
/// drains — stop claiming, let in-flight batches finish within the grace period, release the rest, stop serving.
public enum ValkeyFlightNode {
    /// Runs `configuration.mode` until SIGINT or SIGTERM, then shuts down gracefully.
    ///
    /// - Throws: ``NodeError`` for configuration that cannot work (no Valkey binary, an address that cannot be
    ///   bound, Valkey unreachable at start).
    public static func run(_ configuration: NodeConfiguration) async throws {
        try await self.run(configuration, until: { await ProcessIO.waitForTermination() })
    }

    /// As ``run(_:)``, stopping when `stop` returns (tests, benchmarks and embedding); `stop` returns what stopped
    /// it. `processor` replaces the configured one; `onReady` gets the advertised location once the node serves.
    package static func run(_ configuration: NodeConfiguration, processor: (any BatchProcessor)? = nil,
                            onReady: (@Sendable (String) -> Void)? = nil,
                            until stop: @Sendable () async -> String) async throws {
        let log = configuration.log
        let mode = configuration.mode
        // What this node advertises is checked before anything starts (a loopback address with a remote Valkey
        // is refused).
        let advertised = mode.servesFlight ? try AdvertisedAddress.resolve(configuration) : nil

        // Valkey: the given URL, or (mode `all` only) a private valkey-server.
        var embedded: EmbeddedValkeyServer?
        var valkeyURL = configuration.valkeyURL
        if valkeyURL == nil, mode == .all {
            let binary = try EmbeddedValkeyServer.locateBinary(explicitPath: configuration.valkeyServerBinary)
            let server = try await EmbeddedValkeyServer.start(binary: binary, directory: nil, appendOnly: false)
            embedded = server
            valkeyURL = server.url
            log.info("embedded valkey-server started (in memory: its data is gone on exit)",
                     ["binary": binary, "url": server.url])
        }
        guard valkeyURL != nil || mode == .flight else {
            throw NodeError.invalidArgument("valkeyflight \(mode.rawValue) needs --valkey URL (valkey://HOST:PORT, valkeys://…, unix:///PATH)")
        }
        var coordinator: Coordinator?
        var valkey: ValkeyConnection?
        do {
            if let valkeyURL {
                let connection = try await ValkeyConnection.connect(valkeyURL, clientName: "valkeyflight-\(mode.rawValue)",
                                                                    tlsCAFile: configuration.valkeyTLSCA)
                valkey = connection
                let replicas = try await connection.replicaCount()
                let ack = configuration.replicasAck ?? (replicas > 0 ? 1 : 0)
                if ack > replicas {
                    log.warning("--valkey-replicas-ack exceeds the replicas Valkey has; writes wait up to 1 s for them",
                                ["ack": String(ack), "replicas": String(replicas)])
                }
                coordinator = Coordinator(valkey: connection, retention: configuration.retention, replicasAck: ack,
                                          onReplicaShortfall: { log.warning("replica acknowledgement short", ["detail": $0]) })
            }
        } catch {
            await embedded?.stop()
            throw error
        }
        defer { valkey?.close() }

        do {
            try await self.serve(configuration, advertised: advertised, coordinator: coordinator, processor: processor,
                                 onReady: onReady, until: stop)
        } catch {
            await embedded?.stop()
            throw error
        }
        await embedded?.stop()
        log.info("stopped")
    }

    private static func serve(_ configuration: NodeConfiguration, advertised: (host: String, chosen: Bool)?,
                              coordinator: Coordinator?,
                              processor override: (any BatchProcessor)?, onReady: (@Sendable (String) -> Void)?,
                              until stop: @Sendable () async -> String) async throws {
        let log = configuration.log
        let mode = configuration.mode
        let location = AdvertisedLocation()
        let store = BatchStore(maxMemory: configuration.maxMemory, ttl: configuration.ttl)

        // The Flight server.
        var flight: FlightServer?
        if mode.servesFlight {
            let service: any FlightService
            if mode == .coordinator, let coordinator {
                service = FlightCoordinatorService(coordinator: coordinator)
            } else {
                service = FlightStoreService(store: store, location: location, coordinator: coordinator,
                                             maxAttempts: configuration.worker.policy.maxAttempts, log: log)
            }
            var grpc = GRPCServerConfiguration(host: configuration.listen.host, port: configuration.listen.port,
                                               tls: configuration.tls)
            grpc.maxReceiveMessageSize = Int(Int32.max)
            // --max-memory is checked against each request message's announced size before it is buffered.
            grpc.admission = FlightMemoryAdmission(store: store)
            do {
                flight = try FlightServer(service: service, configuration: grpc, auth: configuration.auth)
            } catch {
                throw NodeError.invalidArgument("cannot serve on \(configuration.listen): \(error)")
            }
            let scheme = configuration.tls == nil ? "grpc" : "grpc+tls"
            let bound = HostPort(host: configuration.listen.host, port: flight?.port ?? 0)
            location.set(configuration.advertise
                ?? "\(scheme)://\(HostPort(host: advertised?.host ?? bound.host, port: bound.port))")
            if configuration.announcesListening { ProcessIO.printLine("listening on \(scheme)://\(bound)") }
            if advertised?.chosen == true {
                log.info("advertising \(location.uri): listening on \(bound) without --advertise, so this machine's first address is what batches record and other hosts dial; pass --advertise to choose",
                         ["location": location.uri, "listen": "\(bound)"])
            }
            log.info("\(mode.rawValue) node ready", ["location": location.uri, "valkey": coordinator == nil ? "off" : "on",
                                                     "auth": configuration.auth == nil ? "off" : "basic",
                                                     "tls": configuration.tls == nil ? "off" : "on"])
        }

        // Workers.
        var pool: WorkerPool?
        var processor: (any BatchProcessor)?
        let clients = FlightClientPool(trustRoots: configuration.trustRoots)
        if mode.runsWorkers, let coordinator {
            let made = try override ?? Self.makeProcessor(configuration.processor)
            processor = made
            let data = NodeDataAccess(localStore: mode == .all ? store : nil, localLocation: mode == .all ? location : nil,
                                      coordinator: coordinator, clients: clients)
            pool = WorkerPool(coordinator: coordinator, data: data, processor: made, configuration: configuration.worker, log: log)
            log.info("worker pool ready", ["queues": configuration.worker.queues.joined(separator: ","),
                                           "concurrency": String(configuration.worker.concurrency),
                                           "processor": Self.describe(configuration.processor)])
        }

        onReady?(location.uri)

        // Everything runs as child tasks of this scope; the signal ends it.
        let housekeepingInterval = min(.seconds(1), configuration.worker.lease / 4)
        await withTaskGroup(of: Void.self) { group in
            let workers = pool.map { pool in Task { await pool.run() } }
            if mode.runsHousekeeping, let coordinator {
                group.addTask { await Housekeeper(coordinator: coordinator, interval: housekeepingInterval, log: log).run() }
            }
            if mode.servesFlight {
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: min(configuration.ttl / 10, .seconds(1)))
                        let removed = store.sweep()
                        if removed > 0 { log.debug("expired batches removed", ["count": String(removed)]) }
                    }
                }
            }
            let signal = await stop()
            log.info("shutting down", ["signal": signal, "grace": "\(configuration.grace)"])

            // Drain: stop claiming, give in-flight batches the grace period, then release what is left.
            if let pool, let workers {
                pool.stopClaiming()
                let grace = configuration.grace
                let timer = Task {
                    try? await Task.sleep(for: grace)
                    guard !Task.isCancelled else { return }
                    log.warning("grace period over: releasing batches still in flight", ["busy": String(pool.busy)])
                    workers.cancel()
                }
                await workers.value
                timer.cancel()
            }
            await flight?.shutdown(gracePeriod: configuration.grace)
            group.cancelAll()
        }
        if let processor = processor as? ExecProcessor { await processor.shutdown() }
        clients.close()
    }

    static func makeProcessor(_ kind: ProcessorKind) throws -> any BatchProcessor {
        switch kind {
        case .passthrough: return PassthroughProcessor()
        case let .exec(command, persistent): return try ExecProcessor(command: command, persistent: persistent)
        }
    }

    static func describe(_ kind: ProcessorKind) -> String {
        switch kind {
        case .passthrough: return "passthrough"
        case let .exec(command, persistent): return (persistent ? "exec-persistent: " : "exec: ") + command
        }
    }
}
