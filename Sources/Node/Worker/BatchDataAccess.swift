internal import FlightProto
public import FlightRPC
internal import GRPCWire
internal import Synchronization

/// Where a worker reads a claimed batch's input and writes its result. The worker never cares whether the data
/// lives in this process (mode `all`) or on another node reached over Flight.
public protocol BatchDataAccess: Sendable {
    /// The claimed batch's input.
    ///
    /// - Throws: ``NodeError/notFound(_:)`` when the data is gone (the batch then fails at once);
    ///   ``NodeError/unavailable(_:)`` when its node stayed unreachable through the retries.
    func fetch(_ claim: BatchClaim) async throws -> ProcessorInput

    /// Stores `output` as the claim's result (`QUEUE/ID/result` on the input's node), replacing what an earlier
    /// attempt stored; refused with ``NodeError/staleToken(_:)`` unless the claim's token is current.
    func storeResult(_ output: ProcessorOutput, for claim: BatchClaim) async throws -> BatchKey
}

/// The data access of a node's workers: batches whose recorded location is this process's own Flight server are
/// read from and written to its store directly (no loopback gRPC, no copy); others go over Flight, with one shared
/// connection per node, retrying an unreachable node with backoff for at most `retryWindow`.
public final class NodeDataAccess: BatchDataAccess {
    let local: (store: BatchStore, location: AdvertisedLocation)?
    let coordinator: Coordinator
    let clients: FlightClientPool
    let retryWindow: Duration

    public init(localStore: BatchStore?, localLocation: AdvertisedLocation?, coordinator: Coordinator,
                clients: FlightClientPool, retryWindow: Duration = .seconds(10)) {
        if let localStore, let localLocation { self.local = (localStore, localLocation) } else { self.local = nil }
        self.coordinator = coordinator
        self.clients = clients
        self.retryWindow = retryWindow
    }

    private func localStore(for location: String) -> BatchStore? {
        guard let local = self.local, local.location.uri == location else { return nil }
        return local.store
    }

    public func fetch(_ claim: BatchClaim) async throws -> ProcessorInput {
        if let store = self.localStore(for: claim.location) {
            guard let batch = store.get(claim.key) else {
                let reason = store.corruption(of: claim.key) ?? "\(claim.key) is no longer stored on \(claim.location)"
                throw NodeError.notFound("input data gone: \(reason)")
            }
            return ProcessorInput(key: claim.key, attempt: claim.attempt, schema: batch.schema, messages: batch.messages)
        }
        return try await self.retryingUnreachable(claim.location, "fetching \(claim.key)") {
            let client = try self.clients.client(for: claim.location)
            let reader = try await client.doGet(Ticket(Array(claim.key.description.utf8)))
            var ingest = BatchIngest(what: "input \(claim.key) from \(claim.location)")
            while let data = try await reader.nextData() { try ingest.add(data) }
            return ProcessorInput(key: claim.key, attempt: claim.attempt, schema: try ingest.schema(), messages: ingest.messages)
        }
    }

    public func storeResult(_ output: ProcessorOutput, for claim: BatchClaim) async throws -> BatchKey {
        let resultKey = claim.key.resultKey
        if let store = self.localStore(for: claim.location) {
            guard try await self.coordinator.isCurrent(claim) else {
                throw NodeError.staleToken("result for \(claim.key) not stored: attempt \(claim.attempt)'s lease is no longer current")
            }
            let reservation = try store.reserve(resultKey, replacing: true)
            do {
                for message in output.messages { try store.grow(reservation, by: message.heldBytes) }
            } catch {
                store.cancel(reservation)
                throw error
            }
            _ = try await store.store(reservation, schema: output.schema, messages: output.messages, rows: output.rows)
            return resultKey
        }
        return try await self.retryingUnreachable(claim.location, "storing the result of \(claim.key)") {
            let client = try self.clients.client(for: claim.location)
            var headers = GRPCMetadata()
            headers.add(FlightStoreService.fencingTokenHeader, claim.token)
            let writer = client.doPut(FlightDescriptor(path: [claim.key.queue, claim.key.id, "result"]), metadata: headers)
            do {
                for message in output.messages {
                    try await writer.send(header: message.header, body: [message.body], bodyLength: message.body.count)
                }
            } catch {
                writer.cancel()
                throw error
            }
            _ = try await writer.finish()
            return resultKey
        }
    }

    /// Runs `body`, retrying while the node at `location` is unreachable (UNAVAILABLE) with backoff from 100 ms
    /// to 2 s, for at most `retryWindow`. NOT_FOUND becomes ``NodeError/notFound(_:)`` ("data gone"),
    /// FAILED_PRECONDITION ``NodeError/staleToken(_:)``.
    func retryingUnreachable<T: Sendable>(_ location: String, _ what: String,
                                          _ body: @Sendable () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        var pause = Duration.milliseconds(100)
        while true {
            do {
                return try await body()
            } catch let status as GRPCStatus {
                switch status.code {
                case .notFound:
                    throw NodeError.notFound("input data gone: \(location) answered NOT_FOUND when \(what): \(status.message)")
                case .failedPrecondition:
                    throw NodeError.staleToken("\(location) refused \(what): \(status.message)")
                case .unavailable:
                    guard ContinuousClock.now - start + pause <= self.retryWindow else {
                        throw NodeError.unavailable("node \(location) unreachable for \(self.retryWindow) when \(what): \(status.message)")
                    }
                    try await Task.sleep(for: pause)
                    pause = min(pause * 2, .seconds(2))
                default:
                    throw status
                }
            }
        }
    }
}

/// One shared Flight connection per node location, opened on first use.
public final class FlightClientPool: Sendable {
    let trustRoots: String?
    private let clients = Mutex<[String: FlightClient]>([:])

    /// - Parameter trustRoots: PEM CA file for `grpc+tls` nodes.
    public init(trustRoots: String? = nil) {
        self.trustRoots = trustRoots
    }

    /// The connection to `location`.
    ///
    /// - Throws: ``FlightRPCError`` for a location that does not parse.
    public func client(for location: String) throws -> FlightClient {
        if let client = self.clients.withLock({ $0[location] }) { return client }
        let client = try FlightClient(location: FlightLocation(parsing: location), trustRoots: self.trustRoots)
        return self.clients.withLock { clients in
            if let existing = clients[location] {
                client.close()
                return existing
            }
            clients[location] = client
            return client
        }
    }

    /// Closes every connection.
    public func close() {
        let all = self.clients.withLock { clients in
            defer { clients = [:] }
            return Array(clients.values)
        }
        for client in all { client.close() }
    }
}
