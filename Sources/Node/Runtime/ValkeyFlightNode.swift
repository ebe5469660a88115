internal import FlightRPC
internal import GRPCWire
internal import HTTP1

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

        // --data-dir: durable batches (and, for the embedded valkey-server, its AOF there).
        var spill: SpillDirectory?
        if let directory = configuration.dataDirectory, mode == .all || mode == .flight {
            spill = try SpillDirectory(path: directory, fsync: configuration.fsync, maxDisk: configuration.maxDisk)
        } else if mode == .all || mode == .flight {
            log.info("in memory only: stored batches are gone when this process exits (--data-dir DIR keeps them)")
        }

        // Valkey: the given URL, or (mode `all` only) a private valkey-server.
        var embedded: EmbeddedValkeyServer?
        var valkeyURL = configuration.valkeyURL
        if valkeyURL == nil, mode == .all {
            let binary = try EmbeddedValkeyServer.locateBinary(explicitPath: configuration.valkeyServerBinary)
            let server: EmbeddedValkeyServer
            if let spill {
                // AOF in DIR/.valkey: appendfsync always, or (--fsync never) when the OS writes it.
                server = try await EmbeddedValkeyServer.start(
                    binary: binary, directory: spill.valkeyDirectory, appendOnly: true,
                    arguments: spill.fsync == .always ? [] : ["--appendfsync", "no"])
                log.info("embedded valkey-server started (AOF in the data directory: its data survives a restart)",
                         ["binary": binary, "url": server.url, "dir": spill.valkeyDirectory,
                          "appendfsync": spill.fsync == .always ? "always" : "no"])
            } else {
                server = try await EmbeddedValkeyServer.start(binary: binary, directory: nil, appendOnly: false)
                log.info("embedded valkey-server started (in memory: its data is gone on exit)",
                         ["binary": binary, "url": server.url])
            }
            embedded = server
            valkeyURL = server.url
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
                let made = Coordinator(valkey: connection, retention: configuration.retention, replicasAck: ack,
                                       onReplicaShortfall: { log.warning("replica acknowledgement short", ["detail": $0]) })
                coordinator = made
                for (queue, shards) in configuration.queueShards.sorted(by: { $0.key < $1.key }) {
                    let layout = try await made.configureShards(queue: queue, shards: shards)
                    log.info("queue configured", ["queue": queue, "shards": String(layout.shards),
                                                  "history": layout.history.map(String.init).joined(separator: ",")])
                }
            }
        } catch {
            await embedded?.stop()
            throw error
        }
        defer { valkey?.close() }

        do {
            try await self.serve(configuration, advertised: advertised, coordinator: coordinator, spill: spill,
                                 processor: processor,
                                 onReady: onReady, until: stop)
        } catch {
            await embedded?.stop()
            throw error
        }
        await embedded?.stop()
        log.info("stopped")
        NodeLogger.flush()
    }

    private static func serve(_ configuration: NodeConfiguration, advertised: (host: String, chosen: Bool)?,
                              coordinator: Coordinator?, spill: SpillDirectory?,
                              processor override: (any BatchProcessor)?, onReady: (@Sendable (String) -> Void)?,
                              until stop: @Sendable () async -> String) async throws {
        let log = configuration.log
        let mode = configuration.mode
        let location = AdvertisedLocation()
        let store = BatchStore(maxMemory: configuration.maxMemory, ttl: configuration.ttl, spill: spill)
        if let spill {
            // The index is rebuilt before the node serves (and says `listening on`).
            let report = await store.loadSpilled { warning, line in warning ? log.warning(line) : log.info(line) }
            log.info("data directory loaded", ["dir": spill.path, "batches": String(report.loaded),
                                               "corrupted": String(report.corrupted),
                                               "temporary_removed": String(report.temporaryRemoved),
                                               "expired": String(report.expired), "fsync": spill.fsync.rawValue])
        }
        let metrics = NodeMetrics(queues: mode.runsWorkers ? configuration.worker.queues : [])
        let clients = FlightClientPool(trustRoots: configuration.trustRoots)
        let http = Self.httpHandler(configuration, store: mode == .coordinator ? nil : store, coordinator: coordinator,
                                    metrics: metrics, clients: clients)

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
            // HTTP/1.1 on the gRPC port: told apart by the first bytes, or with TLS by ALPN.
            if configuration.httpListen == .grpcPort { grpc.http1 = http }
            do {
                flight = try FlightServer(service: service, configuration: grpc, auth: configuration.auth,
                                          observer: FlightCallMetrics(metrics: metrics, log: log))
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

        // HTTP on a port of its own (always so for a worker, which has no gRPC port).
        var httpServer: GRPCServer?
        if case let .address(address) = configuration.httpListen {
            var settings = GRPCServerConfiguration(host: address.host, port: address.port)
            settings.http1 = http
            do {
                httpServer = try GRPCServer(configuration: settings, router: GRPCRouter())
            } catch {
                await flight?.shutdown(gracePeriod: .zero)
                throw NodeError.invalidArgument("cannot serve HTTP on \(address): \(error)")
            }
            let bound = HostPort(host: address.host, port: httpServer?.port ?? 0)
            if configuration.announcesListening { ProcessIO.printLine("listening on http://\(bound)") }
            log.info("http ready", ["address": "http://\(bound)"])
        }

        // Workers.
        var pool: WorkerPool?
        var processor: (any BatchProcessor)?
        if mode.runsWorkers, let coordinator {
            let made = try override ?? Self.makeProcessor(configuration.processor)
            processor = made
            let data = NodeDataAccess(localStore: mode == .all ? store : nil, localLocation: mode == .all ? location : nil,
                                      coordinator: coordinator, clients: clients)
            pool = WorkerPool(coordinator: coordinator, data: data, processor: made, configuration: configuration.worker, log: log,
                              metrics: metrics)
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
            await httpServer?.shutdown(gracePeriod: .seconds(1))
            group.cancelAll()
        }
        if let processor = processor as? ExecProcessor { await processor.shutdown() }
        clients.close()
    }

    /// The HTTP endpoints of this node (nil with `--http-listen off`).
    static func httpHandler(_ configuration: NodeConfiguration, store: BatchStore?, coordinator: Coordinator?,
                            metrics: NodeMetrics, clients: FlightClientPool) -> OperationsHTTPHandler? {
        guard configuration.httpListen != .off else { return nil }
        let sources = MetricsSources(metrics: metrics, store: store, coordinator: coordinator, valkey: coordinator?.valkey,
                                     batchCounts: coordinator.map { CachedBatchCounts(coordinator: $0) })
        let routes = OperationsRoutes(sources: sources,
                                      actions: coordinator.map { CoordinatorActions(coordinator: $0, store: store) },
                                      store: store, auth: configuration.auth, clients: clients)
        return OperationsHTTPHandler(routes: routes, log: configuration.log)
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
