internal import ArrowIPC
public import FlightProto
internal import GRPCWire
internal import Synchronization

/// The Flight service of a node without a coordinator: an in-memory batch store
/// (../shared/CONTRACT.md §1–2). DoPut stores a whole validated IPC stream under `QUEUE/ID`; DoGet sends
/// the stored messages back byte for byte, body buffers without copies.
public final class FlightStoreService: FlightService {
    public let store: BatchStore
    /// The location put in FlightInfo endpoints, e.g. `grpc://127.0.0.1:8815`.
    public let location: AdvertisedLocation

    public init(store: BatchStore, location: AdvertisedLocation) {
        self.store = store
        self.location = location
    }

    static let actions = [
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

    static func key(for descriptor: FlightDescriptor?) throws -> BatchKey {
        guard let descriptor, descriptor.type == .path else {
            throw NodeError.invalidArgument("DoPut needs a PATH descriptor [QUEUE, ID] or [QUEUE]")
        }
        if descriptor.path.count == 1 {
            return try BatchKey(queue: descriptor.path[0], id: BatchID.generate())
        }
        return try BatchKey(path: descriptor.path)
    }

    public func doPut(_ requests: FlightRequestStream<FlightData>, _ responses: FlightResponseStream<PutResult>,
                      _ context: FlightCallContext) async throws {
        guard let first = try await requests.next() else {
            throw NodeError.invalidArgument("DoPut stream is empty: the first message must carry the descriptor and schema")
        }
        let key = try Self.key(for: first.flightDescriptor)
        let reservation = try self.store.reserve(key)
        do {
            var decoder = IPCMessageDecoder(options: .untrusted)
            var messages: [StoredMessage] = []
            var rows = 0
            var next: FlightData? = first
            while let data = next {
                if data.dataHeader.isEmpty, !data.dataBody.isEmpty {
                    throw NodeError.invalidArgument("DoPut message with a data_body but no data_header")
                }
                if !data.dataHeader.isEmpty {
                    try self.store.grow(reservation, by: data.dataHeader.count + data.dataBody.count)
                    // A compressed body is validated by decompressing it into scratch memory, which counts against
                    // the memory limit while it exists; the stored message stays the compressed bytes received.
                    let scratch = try decoder.decompressedSize(header: data.dataHeader, body: data.dataBody)
                    if scratch > 0 { try self.store.grow(reservation, by: scratch) }
                    defer { if scratch > 0 { try? self.store.grow(reservation, by: -scratch) } }
                    if case let .recordBatch(batch) = try decoder.decode(header: data.dataHeader, body: data.dataBody) {
                        rows += batch.length
                    }
                    messages.append(StoredMessage(header: data.dataHeader, body: data.dataBody))
                }
                next = try await requests.next()
            }
            guard let schema = decoder.schema else {
                throw NodeError.invalidArgument("DoPut stream for \(key) has no schema message")
            }
            let batch = self.store.commit(reservation, schema: schema, messages: messages, rows: rows)
            let json = "{\"key\":\(JSONText.quote(key.description)),\"rows\":\(batch.rows),\"bytes\":\(batch.bytes),\"status\":\"stored\"}"
            try await responses.send(PutResult(Array(json.utf8)))
        } catch {
            self.store.cancel(reservation)
            throw error
        }
    }

    // MARK: Reading

    private func batch(for ticket: Ticket) throws -> StoredBatch {
        let text = String(decoding: ticket.value, as: UTF8.self)
        guard let key = try? BatchKey(parsing: text), let batch = self.store.get(key) else {
            throw NodeError.notFound("no batch '\(text)' (unknown, deleted or expired)")
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

    func flightInfo(_ batch: StoredBatch) -> FlightInfo {
        var info = FlightInfo()
        info.schema = Self.framedSchema(batch)[...]
        info.flightDescriptor = FlightDescriptor(path: [batch.key.queue, batch.key.id] + (batch.key.isResult ? ["result"] : []))
        info.endpoints = [FlightEndpoint(ticket: Ticket(Array(batch.key.description.utf8)), locations: [Location(uri: self.location.uri)])]
        info.totalRecords = Int64(batch.rows)
        info.totalBytes = Int64(batch.bytes)
        return info
    }

    public func getFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> FlightInfo {
        self.flightInfo(try self.batch(for: descriptor))
    }

    public func pollFlightInfo(_ descriptor: FlightDescriptor, _ context: FlightCallContext) async throws -> PollInfo {
        var poll = PollInfo()
        poll.info = self.flightInfo(try self.batch(for: descriptor))
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

    public func listActions(_ responses: FlightResponseStream<ActionType>, _ context: FlightCallContext) async throws {
        for action in Self.actions { try await responses.send(action) }
    }

    public func doAction(_ action: FlightAction, _ responses: FlightResponseStream<FlightResult>, _ context: FlightCallContext) async throws {
        let json: String
        switch action.type {
        case "health":
            json = "{\"status\":\"ok\",\"batches\":\(self.store.usage.batches)}"
        case "stats":
            json = self.statsJSON()
        case "delete":
            let text = String(decoding: action.body, as: UTF8.self)
            let key = try BatchKey(parsing: text)
            guard self.store.delete(key) else { throw NodeError.notFound("no batch '\(key)' to delete") }
            json = "{\"key\":\(JSONText.quote(key.description)),\"deleted\":true}"
        default:
            throw NodeError.invalidArgument(
                "unknown action '\(action.type)'; this node serves \(Self.actions.map(\.type).joined(separator: ", "))")
        }
        try await responses.send(FlightResult(Array(json.utf8)))
    }

    func statsJSON() -> String {
        var queues: [String: (batches: Int, rows: Int, bytes: Int)] = [:]
        for batch in self.store.list() {
            let entry = queues[batch.key.queue, default: (0, 0, 0)]
            queues[batch.key.queue] = (entry.batches + 1, entry.rows + batch.rows, entry.bytes + batch.bytes)
        }
        let usage = self.store.usage
        let perQueue = queues.sorted { $0.key < $1.key }.map { queue, entry in
            "\(JSONText.quote(queue)):{\"batches\":\(entry.batches),\"rows\":\(entry.rows),\"bytes\":\(entry.bytes)}"
        }
        return "{\"batches\":\(usage.batches),\"bytes\":\(usage.storedBytes),\"reserved_bytes\":\(usage.reservedBytes),"
            + "\"max_memory\":\(self.store.maxMemory == .max ? "null" : String(self.store.maxMemory)),"
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
