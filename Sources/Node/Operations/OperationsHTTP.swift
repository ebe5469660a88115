internal import GRPCWire
internal import HTTP1

/// Serves HTTP/1.1 connections (on the gRPC port or `--http-listen`) with ``OperationsRoutes``.
struct OperationsHTTPHandler: HTTP1ConnectionHandler {
    let routes: OperationsRoutes
    let log: NodeLogger

    func connectionOpened(_ connection: RawConnection) -> any RawConnectionSession {
        OperationsHTTPSession(connection: connection, routes: self.routes, log: self.log)
    }
}

/// One HTTP/1.1 connection: the parser's state on the loop thread; each request is answered by a task (the
/// routes may wait for Valkey), one request at a time, and the response is handed back to the loop.
final class OperationsHTTPSession: RawConnectionSession {
    private let connection: RawConnection
    private let routes: OperationsRoutes
    private let log: NodeLogger
    private var state = HTTP1Connection()
    private var keepAlive = true
    private var draining = false
    private var task: Task<Void, Never>?

    init(connection: RawConnection, routes: OperationsRoutes, log: NodeLogger) {
        self.connection = connection
        self.routes = routes
        self.log = log
    }

    func received(_ bytes: UnsafeRawBufferPointer) {
        if let action = self.state.receive(bytes, now: .now) { self.perform(action) }
    }

    func sendQueued() {
        if let action = self.state.responseSent(keepAlive: self.keepAlive && !self.draining, now: .now) {
            self.perform(action)
        }
    }

    func tick(now: ContinuousClock.Instant) {
        if let action = self.state.tick(now: now) { self.perform(action) }
    }

    func drain() {
        self.draining = true
        if !self.state.isHandling { self.connection.close() }
    }

    func closed() {
        self.task?.cancel()
        self.task = nil
    }

    private func perform(_ action: HTTP1Connection.Action) {
        switch action {
        case .handle(let request):
            let keepAlive = request.keepAlive && !self.draining
            self.keepAlive = keepAlive
            let routes = self.routes
            let connection = self.connection
            let log = self.log
            self.task = Task {
                let started = ContinuousClock.now
                let response = await routes.respond(request)
                connection.send(response.serialized(keepAlive: keepAlive, head: request.method == "HEAD"),
                                thenClose: !keepAlive)
                if log.level <= .debug {
                    log.debug("http", ["method": request.method, "path": String(request.path.prefix(256)),
                                       "peer": connection.peer, "status": String(response.status),
                                       "bytes": String(response.body.count),
                                       "duration": NodeLogger.milliseconds(ContinuousClock.now - started)])
                }
            }
        case .refuse(let error):
            self.connection.send(HTTP1Response(error: error).serialized(keepAlive: false), thenClose: true)
        case .close:
            self.connection.close()
        }
    }
}
