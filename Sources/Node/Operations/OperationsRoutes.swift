internal import ArrowIPC
internal import FlightProto
internal import FlightRPC
internal import GRPCWire
internal import HTTP1

/// The node's HTTP endpoints (the ValkeyFlight contract §4): `/metrics`, `/healthz`, `/readyz`, the JSON API and
/// the dashboard. Management answers come from ``CoordinatorActions``, the same code as the Flight actions.
struct OperationsRoutes: Sendable {
    let sources: MetricsSources
    /// nil without a coordinator (a plain Flight store).
    let actions: CoordinatorActions?
    let store: BatchStore?
    let auth: FlightBasicAuth?
    /// Fetches the preview of a batch stored on another node.
    let clients: FlightClientPool?
    /// Rows shown in a batch's preview.
    static let previewRows = 20

    /// The response to `request` (never throws: failures become 4xx/5xx answers).
    func respond(_ request: HTTP1Request) async -> HTTP1Response {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if parts == ["healthz"] {
            return Self.allow(request, ["GET", "HEAD"]) ?? HTTP1Response(status: 200, text: "ok\n")
        }
        if let auth = self.auth, !(request.header("authorization").map(auth.acceptsHTTPAuthorization) ?? false) {
            return HTTP1Response(status: 401, headers: [("WWW-Authenticate", "Basic realm=\"valkeyflight\""),
                                                        ("Content-Type", "application/json")],
                                 body: Array("{\"error\":\"credentials or bearer token required\"}".utf8))
        }
        switch parts.first {
        case nil:
            return Self.allow(request, ["GET", "HEAD"])
                ?? HTTP1Response(status: 200, headers: [("Content-Type", "text/html; charset=utf-8"),
                                                        ("Cache-Control", "no-store"),
                                                        ("Content-Security-Policy", Dashboard.contentSecurityPolicy),
                                                        ("X-Frame-Options", "DENY")],
                                 body: Array(Dashboard.html.utf8))
        case "metrics" where parts.count == 1:
            if let refusal = Self.allow(request, ["GET", "HEAD"]) { return refusal }
            let text = await MetricsExposition.render(self.sources)
            return HTTP1Response(status: 200, text: text, contentType: MetricsExposition.contentType)
        case "readyz" where parts.count == 1:
            if let refusal = Self.allow(request, ["GET", "HEAD"]) { return refusal }
            let (ready, reason) = await self.readiness()
            return HTTP1Response(status: ready ? 200 : 503, text: reason + "\n")
        case "api":
            return await self.api(request, Array(parts.dropFirst()))
        default:
            return Self.notFound(request.path)
        }
    }

    private func api(_ request: HTTP1Request, _ parts: [String]) async -> HTTP1Response {
        do {
            switch parts.count {
            case 1 where parts[0] == "stats":
                if let refusal = Self.allow(request, ["GET", "HEAD"]) { return refusal }
                return Self.json(try await self.run("stats", "").first ?? "{}")
            case 1 where parts[0] == "batches":
                if let refusal = Self.allow(request, ["GET", "HEAD"]) { return refusal }
                var body: [String] = []
                if let queue = request.queryValue("queue"), !queue.isEmpty { body.append("\"queue\":\(JSONText.quote(queue))") }
                if let status = request.queryValue("status"), !status.isEmpty {
                    body.append("\"status\":\(JSONText.quote(status))")
                }
                if let limit = request.queryValue("limit"), !limit.isEmpty {
                    guard let n = Int(limit), n > 0 else {
                        throw NodeError.invalidArgument("limit must be a positive whole number, got '\(BatchKey.printable(limit))'")
                    }
                    body.append("\"limit\":\(n)")
                }
                let statuses = try await self.run("list", "{\(body.joined(separator: ","))}")
                return Self.json("[\(statuses.joined(separator: ","))]")
            case 3 where parts[0] == "batches":
                if let refusal = Self.allow(request, ["GET", "HEAD"]) { return refusal }
                return Self.json(try await self.detail(try BatchKey(queue: parts[1], id: parts[2])))
            case 4 where parts[0] == "batches" && (parts[3] == "retry" || parts[3] == "cancel"):
                if let refusal = Self.allow(request, ["POST"]) { return refusal }
                if let refusal = Self.crossSiteRefusal(request) { return refusal }
                let key = try BatchKey(queue: parts[1], id: parts[2])
                return Self.json(try await self.run(parts[3], key.description).first ?? "{}")
            default:
                return Self.notFound(request.path)
            }
        } catch {
            return Self.failure(error)
        }
    }

    private func run(_ type: String, _ body: String) async throws -> [String] {
        guard let actions = self.actions else {
            throw NodeError.failedPrecondition("this node has no coordinator (start it with --valkey)")
        }
        return try await actions.run(FlightAction(type: type, body: Array(body.utf8)[...]))
    }

    /// Status object, schema, rows, bytes and the first rows of a batch.
    private func detail(_ key: BatchKey) async throws -> String {
        var status: String?
        var location: String?
        if self.actions != nil {
            status = try await self.run("status", key.description).first
            location = status.flatMap { JSONValue.parse($0)?["location"]?.text }
        }
        var data = "null"
        var source = "unavailable"
        if let batch = self.store?.get(key) {
            data = Self.dataJSON(key, schema: batch.schema, messages: batch.messages, rows: batch.rows, bytes: batch.bytes)
            source = "local"
        } else if let location, let clients = self.clients, !location.isEmpty {
            do {
                let client = try clients.client(for: location)
                let reader = try await client.doGet(Ticket(Array(key.description.utf8)))
                var ingest = BatchIngest(what: "preview of \(key) from \(location)")
                while let message = try await reader.nextData() { try ingest.add(message) }
                let schema = try ingest.schema()
                let input = ProcessorInput(key: key, attempt: 0, schema: schema, messages: ingest.messages)
                let bytes = input.messages.reduce(0) { $0 + $1.header.count + $1.body.count }
                data = Self.dataJSON(key, schema: schema, messages: input.messages, rows: nil, bytes: bytes)
                source = location
            } catch {
                source = "unavailable: \(error)"
            }
        } else if status == nil {
            throw NodeError.notFound("no batch '\(key)'")
        }
        return "{\"key\":\(JSONText.quote(key.description)),\"status\":\(status ?? "null"),\"data\":\(data),"
            + "\"data_source\":\(JSONText.quote(source))}"
    }

    /// `{"schema": [...], "rows": n, "bytes": n, "preview": [{column: value}, ...]}`.
    static func dataJSON(_ key: BatchKey, schema: Schema, messages: [StoredMessage], rows: Int?, bytes: Int) -> String {
        let fields = schema.fields.map { field in
            "{\"name\":\(JSONText.quote(field.name)),\"type\":\(JSONText.quote(field.typeDescription)),\"nullable\":\(field.nullable)}"
        }
        let input = ProcessorInput(key: key, attempt: 0, schema: schema, messages: messages)
        var stream: [UInt8] = []
        for segment in input.streamSegments { stream += segment }
        var previewRows: [String] = []
        var total = 0
        if var reader = try? IPCStreamReader(stream) {
            while let batch = try? reader.next() {
                total += batch.length
                if previewRows.count < Self.previewRows { previewRows += Self.rows(batch, limit: Self.previewRows - previewRows.count) }
            }
        }
        return "{\"schema\":[\(fields.joined(separator: ","))],\"rows\":\(rows ?? total),\"bytes\":\(bytes),"
            + "\"preview\":[\(previewRows.joined(separator: ","))]}"
    }

    /// The first `limit` rows of `batch` as JSON objects; values of types without a JSON form are their type name.
    static func rows(_ batch: RecordBatch, limit: Int) -> [String] {
        let count = min(limit, batch.length)
        let columns: [[String]] = zip(batch.schema.fields, batch.columns).map { field, column in
            Self.values(column, count: count, typeName: field.typeDescription)
        }
        return (0..<count).map { row in
            let pairs = zip(batch.schema.fields, columns).map { "\(JSONText.quote($0.name)):\($1[row])" }
            return "{\(pairs.joined(separator: ","))}"
        }
    }

    private static func values(_ column: ArrayData, count: Int, typeName: String) -> [String] {
        func numbers<T: ArrowPrimitive>(_ type: T.Type, _ text: (T) -> String) -> [String]? {
            guard T.canRead(column.type), column.encoding == nil, let values = try? column.values(as: T.self) else { return nil }
            return (0..<count).map { values[$0].map(text) ?? "null" }
        }
        func finite(_ value: Double) -> String { value.isFinite ? String(value) : JSONText.quote(String(value)) }
        if case .int = column.type {
            if let v = numbers(Int64.self, { String($0) }) ?? numbers(Int32.self, { String($0) })
                ?? numbers(Int16.self, { String($0) }) ?? numbers(Int8.self, { String($0) })
                ?? numbers(UInt64.self, { String($0) }) ?? numbers(UInt32.self, { String($0) })
                ?? numbers(UInt16.self, { String($0) }) ?? numbers(UInt8.self, { String($0) })
            { return v }
        }
        if let v = numbers(Double.self, { finite($0) }) ?? numbers(Float.self, { finite(Double($0)) }) { return v }
        if column.type == .bool, let bools = try? column.bools() {
            return (0..<count).map { bools[$0].map { $0 ? "true" : "false" } ?? "null" }
        }
        switch column.type {
        case .utf8, .largeUtf8, .utf8View:
            if let strings = try? column.binaries() {
                return (0..<count).map { strings.string(at: $0).map { JSONText.quote(String($0.prefix(200))) } ?? "null" }
            }
        case .binary, .largeBinary, .binaryView:
            if let bytes = try? column.binaries() {
                return (0..<count).map { bytes[$0].map { "\"<\($0.count) bytes>\"" } ?? "null" }
            }
        default: break
        }
        let placeholder = JSONText.quote("<\(typeName)>")
        return (0..<count).map { column.isValid($0) ? placeholder : "null" }
    }

    /// Ready when Valkey answers PING within 2 s (modes without Valkey are always ready).
    func readiness() async -> (Bool, String) {
        guard let valkey = self.sources.valkey else { return (true, "ready") }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await valkey.ping() }
                group.addTask {
                    try await Task.sleep(for: .seconds(2))
                    throw NodeError.unavailable("Valkey at \(valkey.displayURL) did not answer PING within 2 s")
                }
                defer { group.cancelAll() }
                try await group.next()
            }
            return (true, "ready")
        } catch {
            return (false, "not ready: Valkey unreachable: \(error)")
        }
    }

    // MARK: Answers

    static func allow(_ request: HTTP1Request, _ methods: [String]) -> HTTP1Response? {
        guard !methods.contains(request.method) else { return nil }
        return HTTP1Response(status: 405, headers: [("Allow", methods.joined(separator: ", ")),
                                                    ("Content-Type", "text/plain; charset=utf-8")],
                             body: Array("\(BatchKey.printable(request.method)) is not allowed here; use \(methods.joined(separator: " or "))\n".utf8))
    }

    /// POSTs change state: they must carry `X-Requested-With` (a header a cross-site form cannot send and a
    /// cross-origin script can only send after a CORS preflight, which this server never approves), and an
    /// `Origin`, when present, must be this server.
    static func crossSiteRefusal(_ request: HTTP1Request) -> HTTP1Response? {
        guard request.header("x-requested-with") != nil else {
            return HTTP1Response(status: 403, text: "{\"error\":\"POST needs the header X-Requested-With (CSRF protection)\"}",
                                 contentType: "application/json")
        }
        if let origin = request.header("origin"), let host = request.header("host"),
            origin != "http://\(host)" && origin != "https://\(host)"
        {
            return HTTP1Response(status: 403, text: "{\"error\":\"cross-origin POST refused\"}", contentType: "application/json")
        }
        return nil
    }

    static func notFound(_ path: String) -> HTTP1Response {
        HTTP1Response(status: 404, text: "{\"error\":\(JSONText.quote("no such path: \(BatchKey.printable(String(path.prefix(256))))"))}",
                      contentType: "application/json")
    }

    static func json(_ text: String) -> HTTP1Response {
        HTTP1Response(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                      body: Array(text.utf8))
    }

    static func failure(_ error: any Error) -> HTTP1Response {
        let status: Int
        switch error {
        case NodeError.notFound: status = 404
        case NodeError.invalidArgument: status = 400
        case NodeError.failedPrecondition, NodeError.staleToken: status = 409
        case NodeError.unavailable: status = 503
        default:
            switch FlightStatus.from(error).code {
            case .notFound: status = 404
            case .invalidArgument: status = 400
            case .failedPrecondition: status = 409
            case .unavailable: status = 503
            default: status = 500
            }
        }
        return HTTP1Response(status: status, text: "{\"error\":\(JSONText.quote("\(error)"))}", contentType: "application/json")
    }
}
