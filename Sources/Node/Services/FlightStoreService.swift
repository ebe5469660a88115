internal import ArrowIPC
public import FlightProto
public import FlightRPC
internal import GRPCWire
internal import Synchronization

/// The Flight service of a node that stores data (the ValkeyFlight contract (CONTRACT.md) §1–2). DoPut stores a whole validated
/// IPC stream under `QUEUE/ID`; DoGet sends the stored messages back byte for byte, body buffers without copies.
/// With a coordinator, a stored batch is registered in Valkey (it becomes pending only once completely stored),
/// GetFlightInfo carries its status, DoExchange submits and streams the result back, results are written under
/// `QUEUE/ID/result` by the worker holding the current fencing token, and the management actions are served.
public final class FlightStoreService: FlightService {
    public let store: BatchStore
    /// The location put in FlightInfo endpoints and recorded for each batch, e.g. `grpc://127.0.0.1:8815`.
    public let location: AdvertisedLocation
    /// The coordinator batches are registered with; nil for a plain in-memory Flight store.
    public let coordinator: Coordinator?
    /// `max_attempts` recorded at registration (a claiming worker's `--max-attempts` replaces it).
    public let maxAttempts: Int
    let log: NodeLogger

    /// The request header that carries a worker's fencing token on a result DoPut.
    public static let fencingTokenHeader = "valkeyflight-fencing-token"

    /// - Parameters:
    ///   - coordinator: registers stored batches (nil: a plain in-memory Flight store).
    ///   - maxAttempts: recorded at registration.
    public convenience init(store: BatchStore, location: AdvertisedLocation, coordinator: Coordinator? = nil,
                            maxAttempts: Int = 3) {
        self.init(store: store, location: location, coordinator: coordinator, maxAttempts: maxAttempts, log: .discard)
    }

    package init(store: BatchStore, location: AdvertisedLocation, coordinator: Coordinator?, maxAttempts: Int,
                 log: NodeLogger) {
        self.store = store
        self.location = location
        self.coordinator = coordinator
        self.maxAttempts = maxAttempts
        self.log = log
    }

    static let storeActions = [
        ActionType(type: "health", description: "Liveness: {\"status\":\"ok\"} and the number of stored batches."),
        ActionType(type: "stats", description: "Stored batches and bytes, in all and per queue (JSON)."),
        ActionType(type: "delete", description: "Body: a batch key QUEUE/ID. Removes the batch; NOT_FOUND if unknown."),
    ]

    // MARK: Handshake (auth off: echo)

    public func handshake(_ requests: FlightRequestStream<HandshakeMessage>, _ responses: FlightResponseStream<HandshakeMessage>,
                          _ context: FlightCallContext) async throws {
        while let request = try await requests.next() {
            try await responses.send(HandshakeMessage(protocolVersion: request.protocolVersion, payload: request.payload))
        }
    }

    // MARK: DoPut

    static func key(for descriptor: FlightDescriptor?, method: String) throws -> BatchKey {
        guard let descriptor, descriptor.type == .path else {
            throw NodeError.invalidArgument("\(method) needs a PATH descriptor [QUEUE, ID] or [QUEUE]")
        }
        if descriptor.path.count == 1 {
            return try BatchKey(queue: descriptor.path[0], id: BatchID.generate())
        }
        return try BatchKey(path: descriptor.path)
    }

    /// Receives a whole IPC stream into the store under `key` (nothing of it visible until it is complete).
    func receive(_ first: (message: FlightData, size: Int), _ requests: FlightRequestStream<FlightData>, key: BatchKey,
                 replacing: Bool = false) async throws -> StoredBatch {
        let reservation = try self.store.reserve(key, replacing: replacing)
        do {
            var ingest = BatchIngest(what: "batch \(key)")
            var next: (message: FlightData, size: Int)? = first
            var spilled = 0
            while let (data, size) = next {
                // The header and body are slices of the whole received message: charge all of it.
                try ingest.add(data, heldBytes: size) { charged in try self.store.grow(reservation, by: charged) }
                // With --data-dir each validated message is written to the batch's file while the rest arrives.
                while spilled < ingest.messages.count {
                    try self.store.append(reservation, ingest.messages[spilled])
                    spilled += 1
                }
                next = try await requests.nextWithSize()
            }
            // With --data-dir the batch is on disk (and the received memory released) before this returns.
            return try await self.store.store(reservation, schema: try ingest.schema(), messages: ingest.messages,
                                              rows: ingest.rows)
        } catch {
            self.store.cancel(reservation)
            throw error
        }
    }

    public func doPut(_ requests: FlightRequestStream<FlightData>, _ responses: FlightResponseStream<PutResult>,
                      _ context: FlightCallContext) async throws {
        guard let first = try await requests.nextWithSize() else {
            throw NodeError.invalidArgument("DoPut stream is empty: the first message must carry the descriptor and schema")
        }
        let key = try Self.key(for: first.message.flightDescriptor, method: "DoPut")
        let status: String
        let batch: StoredBatch
        if key.isResult, let coordinator = self.coordinator {
            batch = try await self.receiveResult(first, requests, key: key, coordinator: coordinator, context: context)
            status = "stored"
        } else {
            batch = try await self.receive(first, requests, key: key)
            status = try await self.register(batch)?.state.rawValue ?? "stored"
        }
        let json = "{\"key\":\(JSONText.quote(key.description)),\"rows\":\(batch.rows),\"bytes\":\(batch.bytes),"
            + "\"status\":\(JSONText.quote(status))}"
        try await responses.send(PutResult(Array(json.utf8)))
    }

    /// Registers a stored input batch with the coordinator (none: nil). If registration fails, the stored data is
    /// removed and the call fails UNAVAILABLE; a key the coordinator already knows fails ALREADY_EXISTS.
    func register(_ batch: StoredBatch) async throws -> BatchStatus? {
        guard let coordinator = self.coordinator, !batch.key.isResult else { return nil }
        let registered: (status: BatchStatus, created: Bool)
        do {
            registered = try await coordinator.register(batch.key, location: self.location.uri, rows: batch.rows,
                                                        bytes: batch.bytes, maxAttempts: self.maxAttempts)
        } catch {
            self.store.delete(batch.key)
            throw NodeError.unavailable("batch \(batch.key) was not stored: registering it with Valkey failed: \(error)")
        }
        guard registered.created else {
            self.store.delete(batch.key)
            throw NodeError.alreadyExists("batch \(batch.key) already exists (\(registered.status.state.rawValue))")
        }
        self.log.info("batch registered", ["key": batch.key.description, "rows": String(batch.rows),
                                           "bytes": String(batch.bytes)])
        return registered.status
    }

    /// A worker's result: accepted only with the batch's current fencing token, replacing what an earlier attempt
    /// stored.
    func receiveResult(_ first: (message: FlightData, size: Int), _ requests: FlightRequestStream<FlightData>, key: BatchKey,
                       coordinator: Coordinator, context: FlightCallContext) async throws -> StoredBatch {
        guard let token = context.metadata[Self.fencingTokenHeader], !token.isEmpty else {
            throw NodeError.failedPrecondition(
                "a result DoPut needs the '\(Self.fencingTokenHeader)' header of the claim that produced it")
        }
        let input = try BatchKey(queue: key.queue, id: key.id)
        guard try await coordinator.isCurrent(BatchClaim.fence(input, token: token)) else {
            throw NodeError.staleToken("result for \(input) rejected: fencing token \(token) is not the current attempt's")
        }
        return try await self.receive(first, requests, key: key, replacing: true)
    }

    // MARK: DoExchange

    /// Submits the client's stream as a batch of `QUEUE` (descriptor `[QUEUE]` or `[QUEUE, ID]`), waits until it is
    /// processed and streams the result back; fails with the batch's last error when it fails.
    public func doExchange(_ requests: FlightRequestStream<FlightData>, _ responses: FlightResponseStream<FlightData>,
                           _ context: FlightCallContext) async throws {
        guard let coordinator = self.coordinator else {
            throw GRPCStatus(.unimplemented, "DoExchange needs a coordinator: start the node with --valkey (or run 'all')")
        }
        guard let first = try await requests.nextWithSize() else {
            throw NodeError.invalidArgument("DoExchange stream is empty: the first message must carry the descriptor and schema")
        }
        let key = try Self.key(for: first.message.flightDescriptor, method: "DoExchange")
        guard !key.isResult else { throw NodeError.invalidArgument("DoExchange takes [QUEUE] or [QUEUE, ID], not a result key") }
        let batch = try await self.receive(first, requests, key: key)
        _ = try await self.register(batch)
        let final = try await BatchWaiter.waitUntilFinished(key, coordinator: coordinator, deadline: context.deadline)
        switch final.state {
        case .completed:
            guard let result = self.store.get(key.resultKey) else {
                throw NodeError.notFound("batch \(key) completed but its result is no longer stored on this node")
            }
            for message in result.messages {
                try await responses.send(parts: FlightData.encodedParts(dataHeader: message.header, body: [message.body],
                                                                        bodyLength: message.body.count))
            }
        case .cancelled:
            throw GRPCStatus(.cancelled, "batch \(key) was cancelled")
        default:
            throw GRPCStatus(.aborted, "batch \(key) failed after \(final.attempts) attempt(s): \(final.lastError ?? "no error recorded")")
        }
    }

    // MARK: Reading

    private func batch(for ticket: Ticket) throws -> StoredBatch {
        let text = String(decoding: ticket.value, as: UTF8.self)
        guard let key = try? BatchKey(parsing: text), let batch = self.store.get(key) else {
            if let key = try? BatchKey(parsing: text), let corruption = self.store.corruption(of: key) {
                throw NodeError.notFound(corruption)
            }
            throw NodeError.notFound("no batch '\(BatchKey.printable(text))' (unknown, deleted or expired)")
        }
        return batch
    }

    private func batch(for descriptor: FlightDescriptor) throws -> StoredBatch {
        guard descriptor.type == .path else {
            throw NodeError.invalidArgument("expected a PATH descriptor [QUEUE, ID], got a \(descriptor.type == .cmd ? "CMD" : "typeless") descriptor")
        }
        let key = try BatchKey(path: descriptor.path)
        guard let batch = self.store.get(key) else { throw NodeError.notFound("no batch '\(key)' (unknown, deleted or expired)") }
        return batch
    }

    public func doGet(_ ticket: Ticket, _ responses: FlightResponseStream<FlightData>, _ context: FlightCallContext) async throws {
        let batch = try self.batch(for: ticket)
        for message in batch.messages {
            try await responses.send(parts: FlightData.encodedParts(dataHeader: message.header, body: [message.body],
                                                                    bodyLength: message.body.count))
        }
    }

    /// The stored schema message framed as an encapsulated IPC message (FlightInfo.schema, SchemaResult).
    static func framedSchema(_ batch: StoredBatch) -> [UInt8] {
        EncodedMessage.frame(header: batch.messages.first?.header ?? [])
    }

    func flightInfo(_ batch: StoredBatch, status: BatchStatus? = nil) -> FlightInfo {
        var info = FlightInfo()
        info.schema = Self.framedSchema(batch)[...]
        info.flightDescriptor = FlightDescriptor(path: [batch.key.queue, batch.key.id] + (batch.key.isResult ? ["result"] : []))
        info.endpoints = [FlightEndpoint(ticket: Ticket(Array(batch.key.description.utf8)), locations: [Location(uri: self.location.uri)])]
        info.totalRecords = Int64(batch.rows)
        info.totalBytes = Int64(batch.bytes)
        if let status { info.appMetadata = Array(status.json.utf8)[...] }
        return info
    }

    public func getFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> FlightInfo {
        let batch = try self.batch(for: descriptor)
        var status: BatchStatus?
        if let coordinator = self.coordinator, !batch.key.isResult {
            status = try await coordinator.status(batch.key)
        }
        return self.flightInfo(batch, status: status)
    }

    public func pollFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> PollInfo {
        var poll = PollInfo()
        poll.info = try await self.getFlightInfo(descriptor, context)
        poll.progress = 1.0
        return poll
    }

    public func getSchema(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> SchemaResult {
        SchemaResult(Self.framedSchema(try self.batch(for: descriptor)))
    }

    public func listFlights(_ criteria: Criteria, _ responses: FlightResponseStream<FlightInfo>, _ context: FlightCallContext) async throws {
        let prefix = String(decoding: criteria.value, as: UTF8.self)
        for batch in self.store.list(prefix: prefix) {
            try await responses.send(self.flightInfo(batch))
        }
    }

    // MARK: Actions

    var actions: [ActionType] {
        guard self.coordinator != nil else { return Self.storeActions }
        return CoordinatorActions.actions
    }

    public func listActions(_ responses: FlightResponseStream<ActionType>, _ context: FlightCallContext) async throws {
        for action in self.actions { try await responses.send(action) }
    }

    public func doAction(_ action: FlightAction, _ responses: FlightResponseStream<FlightResult>, _ context: FlightCallContext) async throws {
        if let coordinator = self.coordinator {
            let handler = CoordinatorActions(coordinator: coordinator, store: self.store)
            for json in try await handler.run(action) { try await responses.send(FlightResult(Array(json.utf8))) }
            return
        }
        let json: String
        switch action.type {
        case "health":
            json = "{\"status\":\"ok\",\"batches\":\(self.store.usage.batches)}"
        case "stats":
            json = self.store.statsJSON()
        case "delete":
            // A key is short: refuse a huge body before copying it into a string.
            guard action.body.count <= 4096 else {
                throw NodeError.invalidArgument("delete: the body must be a batch key QUEUE/ID, got \(action.body.count) bytes")
            }
            let key = try BatchKey(parsing: String(decoding: action.body, as: UTF8.self))
            guard self.store.delete(key) else { throw NodeError.notFound("no batch '\(key)' to delete") }
            self.store.delete(key.resultKey)
            json = "{\"key\":\(JSONText.quote(key.description)),\"deleted\":true}"
        default:
            throw NodeError.invalidArgument(
                "unknown action '\(BatchKey.printable(action.type))'; this node serves \(Self.storeActions.map(\.type).joined(separator: ", "))")
        }
        try await responses.send(FlightResult(Array(json.utf8)))
    }
}

extension BatchStore {
    /// Stored batches and bytes, in all and per queue, as JSON.
    func statsJSON() -> String {
        var queues: [String: (batches: Int, rows: Int, bytes: Int)] = [:]
        for batch in self.list() {
            let entry = queues[batch.key.queue, default: (0, 0, 0)]
            queues[batch.key.queue] = (entry.batches + 1, entry.rows + batch.rows, entry.bytes + batch.bytes)
        }
        let usage = self.usage
        let perQueue = queues.sorted { $0.key < $1.key }.map { queue, entry in
            "\(JSONText.quote(queue)):{\"batches\":\(entry.batches),\"rows\":\(entry.rows),\"bytes\":\(entry.bytes)}"
        }
        return "{\"batches\":\(usage.batches),\"bytes\":\(usage.storedBytes),\"reserved_bytes\":\(usage.reservedBytes),"
            + "\"max_memory\":\(self.maxMemory == .max ? "null" : String(self.maxMemory)),"
            + "\"queues\":{\(perQueue.joined(separator: ","))}}"
    }
}

/// Batch ids made by the server for `[QUEUE]` descriptors: 32 random hex digits.
enum BatchID {
    static func generate() -> String { FlightBasicAuth.randomToken().prefix(32).description }
}

/// The location a node advertises; set once the listening port is known.
public final class AdvertisedLocation: Sendable {
    private let value: Mutex<String>

    public init(_ uri: String = "") {
        self.value = Mutex(uri)
    }

    public var uri: String { self.value.withLock { $0 } }

    public func set(_ uri: String) {
        self.value.withLock { $0 = uri }
    }
}

extension BatchClaim {
    /// The claim a fenced call presents when only its key and token are known (a result DoPut over Flight).
    static func fence(_ key: BatchKey, token: String) -> BatchClaim {
        BatchClaim(key: key, token: token, attempt: 0, location: "", maxAttempts: 0, rows: 0, bytes: 0)
    }
}
