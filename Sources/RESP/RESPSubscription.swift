import Synchronization

/// One event of a subscription.
public enum RESPPubSubMessage: Sendable, Hashable {
    /// A message published to a subscribed channel.
    case message(channel: [UInt8], payload: [UInt8])
    /// A message matched by a subscribed pattern.
    case patternMessage(pattern: [UInt8], channel: [UInt8], payload: [UInt8])
    /// A message published to a subscribed shard channel (SPUBLISH).
    case shardMessage(channel: [UInt8], payload: [UInt8])
    /// The server confirmed a (re)subscription: `kind` is `subscribe`, `psubscribe` or `ssubscribe`;
    /// after a reconnect every subscription is confirmed again.
    case subscribed(kind: String, channel: [UInt8], count: Int)
}

/// A pub/sub subscription on a connection of its own, read as an `AsyncSequence` of messages.
///
/// RESP3 delivers subscription traffic as pushes. When the connection drops, the subscription reconnects
/// (backoff and jitter from the client's configuration, retried until `close()`), subscribes again to every
/// channel, pattern and shard channel, and yields `.subscribed` events again. Messages published while it
/// was disconnected are lost (pub/sub is at-most-once). The sequence ends after `close()`.
///
/// Messages wait for the subscriber in a buffer bounded by `RESPConfiguration.subscriptionBufferLimit` bytes:
/// a subscriber that falls further behind gets `RESPError.subscriberTooSlow` from ``receive()`` (the sequence
/// ends and ``failure`` tells why), the buffer is dropped and the subscription's connection closed, rather than
/// the process holding every message the server publishes.
public final class RESPSubscription: AsyncSequence, Sendable {
    /// Messages and subscription confirmations, in arrival order.
    public typealias Element = RESPPubSubMessage

    private struct Waiter {
        var kind: String
        var remaining: Set<[UInt8]>
        var continuation: CheckedContinuation<Result<Void, RESPError>, Never>
    }

    private struct State {
        var connection: RESPConnection?
        var connecting: Task<Result<RESPConnection, RESPError>, Never>?
        var reconnecting = false
        var closed = false
        var channels: Set<[UInt8]> = []
        var patterns: Set<[UInt8]> = []
        var shardChannels: Set<[UInt8]> = []
        var waiters: [Waiter] = []
        /// Counts connections opened; callbacks of an older connection than the current one are ignored.
        var generation: UInt64 = 0
        /// The generation of the connection in use. A close before adoption belongs to an attempt the client's
        /// `establish` retries by itself, so it neither fails waiters nor starts a second resubscribe.
        var adopted: UInt64 = 0
    }

    /// Events not yet read, bounded in bytes; the waiting reader, if any.
    private struct Inbox {
        var events: [RESPPubSubMessage] = []
        var head = 0
        var bytes = 0
        var reader: CheckedContinuation<Result<RESPPubSubMessage?, RESPError>, Never>?
        var finished = false
        var failure: RESPError?
    }

    private let client: RESPClient
    private let state = Mutex(State())
    private let inbox = Mutex(Inbox())
    private let bufferLimit: Int

    init(client: RESPClient) {
        self.client = client
        self.bufferLimit = client.configuration.subscriptionBufferLimit
    }

    /// The subscription's events as a sequence; it ends after `close()`, or when the subscriber fell too far
    /// behind (then ``failure`` is `.subscriberTooSlow`). Use one iterator per subscription.
    public struct Iterator: AsyncIteratorProtocol {
        let subscription: RESPSubscription

        /// The next event, or nil once the subscription ended.
        public mutating func next() async -> RESPPubSubMessage? {
            try? await self.subscription.receive()
        }

        /// The next event (isolation-aware form).
        public mutating func next(isolation actor: isolated (any Actor)?) async -> RESPPubSubMessage? {
            try? await self.subscription.receive()
        }
    }

    /// An iterator over the subscription's events. Use one iterator per subscription.
    public func makeAsyncIterator() -> Iterator { Iterator(subscription: self) }

    /// The next event, in arrival order; nil after `close()`.
    /// - Throws: `RESPError.subscriberTooSlow` when more than `subscriptionBufferLimit` bytes of messages waited
    ///   for this subscriber (the subscription has ended).
    public func receive() async throws(RESPError) -> RESPPubSubMessage? {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<RESPPubSubMessage?, RESPError>, Never>) in
            let ready: Result<RESPPubSubMessage?, RESPError>? = self.inbox.withLock { inbox in
                if inbox.head < inbox.events.count {
                    let event = inbox.events[inbox.head]
                    inbox.head += 1
                    inbox.bytes -= Self.size(of: event)
                    if inbox.head == inbox.events.count {
                        inbox.events.removeAll(keepingCapacity: inbox.events.capacity <= 1024)
                        inbox.head = 0
                    } else if inbox.head > 1024, inbox.head * 2 > inbox.events.count {
                        inbox.events.removeFirst(inbox.head)
                        inbox.head = 0
                    }
                    return .success(event)
                }
                if let failure = inbox.failure { return .failure(failure) }
                if inbox.finished { return .success(nil) }
                inbox.reader = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
        return try result.get()
    }

    /// Why the subscription ended on its own (`.subscriberTooSlow`), nil otherwise.
    public var failure: RESPError? { self.inbox.withLock { $0.failure } }

    /// Bytes of messages waiting for the subscriber now.
    public var bufferedBytes: Int { self.inbox.withLock { $0.bytes } }

    /// What an event costs the buffer: its byte strings plus a fixed overhead.
    private static func size(of event: RESPPubSubMessage) -> Int {
        switch event {
        case .message(let channel, let payload), .shardMessage(let channel, let payload):
            return 64 + channel.count + payload.count
        case .patternMessage(let pattern, let channel, let payload):
            return 64 + pattern.count + channel.count + payload.count
        case .subscribed(let kind, let channel, _):
            return 64 + kind.utf8.count + channel.count
        }
    }

    /// Hands `event` to a waiting reader or buffers it; over the limit the subscription fails (loop thread).
    private func yield(_ event: RESPPubSubMessage) {
        let limit = self.bufferLimit
        enum Outcome {
            case resume(CheckedContinuation<Result<RESPPubSubMessage?, RESPError>, Never>)
            case buffered
            case overflow(RESPError)
        }
        let outcome: Outcome = self.inbox.withLock { inbox in
            if inbox.finished { return .buffered }
            if let reader = inbox.reader {
                inbox.reader = nil
                return .resume(reader)
            }
            let size = Self.size(of: event)
            if inbox.bytes + size > limit {
                let error = RESPError.subscriberTooSlow(buffered: inbox.bytes + size, limit: limit)
                inbox.events = []
                inbox.head = 0
                inbox.bytes = 0
                inbox.finished = true
                inbox.failure = error
                return .overflow(error)
            }
            inbox.events.append(event)
            inbox.bytes += size
            return .buffered
        }
        switch outcome {
        case .resume(let reader): reader.resume(returning: .success(event))
        case .buffered: break
        case .overflow(let error): self.end(failing: error)
        }
    }

    /// Ends the event sequence: a waiting reader gets nil (or `failure`).
    private func finishInbox() {
        let reader: CheckedContinuation<Result<RESPPubSubMessage?, RESPError>, Never>? = self.inbox.withLock { inbox in
            inbox.finished = true
            defer { inbox.reader = nil }
            return inbox.reader
        }
        reader?.resume(returning: .success(nil))
    }

    /// SUBSCRIBE to `channels`; returns when the server confirmed all of them.
    /// - Throws: connection errors as `RESPClient.send(_:)`; `.clientClosed` after `close()`.
    public func subscribe(channels: [String]) async throws(RESPError) {
        try await self.add("subscribe", channels.map { Array($0.utf8) })
    }

    /// PSUBSCRIBE to glob `patterns`; returns when the server confirmed all of them.
    /// - Throws: as `subscribe(channels:)`.
    public func subscribe(patterns: [String]) async throws(RESPError) {
        try await self.add("psubscribe", patterns.map { Array($0.utf8) })
    }

    /// SSUBSCRIBE to shard `channels` (all in one slot on a cluster); returns when confirmed.
    /// - Throws: as `subscribe(channels:)`; `.server(CROSSSLOT)` for channels of different slots.
    public func subscribe(shardChannels: [String]) async throws(RESPError) {
        try await self.add("ssubscribe", shardChannels.map { Array($0.utf8) })
    }

    /// UNSUBSCRIBE from `channels`; they are not resubscribed after a reconnect. Messages the server sent
    /// before it processed the command may still arrive.
    /// - Throws: `.connectionClosed` if the connection is down (the channels are forgotten anyway).
    public func unsubscribe(channels: [String]) throws(RESPError) {
        try self.remove("UNSUBSCRIBE", channels) { $0.channels.subtract($1) }
    }

    /// PUNSUBSCRIBE from `patterns`; see `unsubscribe(channels:)`.
    /// - Throws: as `unsubscribe(channels:)`.
    public func unsubscribe(patterns: [String]) throws(RESPError) {
        try self.remove("PUNSUBSCRIBE", patterns) { $0.patterns.subtract($1) }
    }

    /// SUNSUBSCRIBE from shard `channels`; see `unsubscribe(channels:)`.
    /// - Throws: as `unsubscribe(channels:)`.
    public func unsubscribe(shardChannels: [String]) throws(RESPError) {
        try self.remove("SUNSUBSCRIBE", shardChannels) { $0.shardChannels.subtract($1) }
    }

    private func remove(_ command: String, _ names: [String], _ forget: (inout State, [[UInt8]]) -> Void)
        throws(RESPError)
    {
        guard !names.isEmpty else { return }
        let bytes = names.map { Array($0.utf8) }
        let connection = self.state.withLock { state in
            forget(&state, bytes)
            return state.connection
        }
        guard let connection else { return }
        try connection.sendWithoutReply(RESPCommand(command, arguments: bytes))
    }

    /// Ends the subscription: closes its connection and finishes the sequence.
    public func close() { self.end(failing: .clientClosed) }

    /// Closes the connection, fails subscribe calls waiting for confirmation with `error`, ends the sequence.
    private func end(failing error: RESPError) {
        let (connection, waiters) = self.state.withLock { state in
            state.closed = true
            defer {
                state.connection = nil
                state.waiters = []
            }
            return (state.connection, state.waiters)
        }
        connection?.close()
        for waiter in waiters { waiter.continuation.resume(returning: .failure(error)) }
        self.finishInbox()
    }

    private func add(_ kind: String, _ names: [[UInt8]]) async throws(RESPError) {
        guard !names.isEmpty else { return }
        let connection = try await self.connection()
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Void, RESPError>, Never>) in
            let closed = self.state.withLock { state in
                if state.closed { return true }
                switch kind {
                case "subscribe": state.channels.formUnion(names)
                case "psubscribe": state.patterns.formUnion(names)
                default: state.shardChannels.formUnion(names)
                }
                state.waiters.append(Waiter(kind: kind, remaining: Set(names), continuation: continuation))
                return false
            }
            if closed {
                continuation.resume(returning: .failure(.clientClosed))
                return
            }
            do throws(RESPError) {
                try connection.sendWithoutReply(RESPCommand(kind.uppercased(), arguments: names))
            } catch {
                self.failWaiters(error)
            }
        }
        try result.get()
    }

    /// The subscription's connection; concurrent callers share one connection attempt.
    private func connection() async throws(RESPError) -> RESPConnection {
        enum Step {
            case ready(RESPConnection)
            case wait(Task<Result<RESPConnection, RESPError>, Never>)
            case closed
        }
        let step: Step = self.state.withLock { state in
            if state.closed { return .closed }
            if let connection = state.connection, connection.isOpen { return .ready(connection) }
            if let running = state.connecting { return .wait(running) }
            let task = Task { await self.openConnection() }
            state.connecting = task
            return .wait(task)
        }
        switch step {
        case .ready(let connection): return connection
        case .closed: throw .clientClosed
        case .wait(let task):
            let result = await task.value
            self.state.withLock { state in
                if state.connecting == task { state.connecting = nil }
            }
            return try result.get()
        }
    }

    private func openConnection() async -> Result<RESPConnection, RESPError> {
        let generation = self.state.withLock { state in
            state.generation &+= 1
            return state.generation
        }
        let options = self.client.connectionOptions(
            push: { [weak self] push in self?.handle(push, generation: generation) },
            onClose: { [weak self] error in self?.connectionClosed(error, generation: generation) })
        let result = await self.client.establish(options: options)
        guard case .success(let connection) = result else { return result }
        let keep: RESPError? = self.state.withLock { state in
            if state.closed { return .clientClosed }
            guard state.generation == generation else {  // a newer attempt took over
                return .connectionClosed(endpoint: "subscription", reason: "superseded by a newer connection", commandsInFlight: 0)
            }
            state.connection = connection
            state.adopted = generation
            return nil
        }
        if let keep {
            connection.close()
            return .failure(keep)
        }
        // Closed between `establish` and adoption: its close callback was ignored, so act on it here.
        if !connection.isOpen {
            self.connectionClosed(
                .connectionClosed(endpoint: "subscription", reason: "closed as it was established", commandsInFlight: 0),
                generation: generation)
        }
        return .success(connection)
    }

    private func failWaiters(_ error: RESPError) {
        let waiters = self.state.withLock { state in
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(returning: .failure(error)) }
    }

    /// Called on the loop thread for each push of the subscription's connection (pushes of a connection that is
    /// no longer the current one are dropped: they would be duplicates).
    private func handle(_ push: RESPValue, generation: UInt64) {
        guard self.state.withLock({ $0.generation == generation }) else { return }
        guard let parts = push.elements, let kind = parts.first?.string?.lowercased() else { return }
        func b(_ i: Int) -> [UInt8] { i < parts.count ? (parts[i].bytes ?? []) : [] }
        switch kind {
        case "message" where parts.count == 3:
            self.yield(.message(channel: b(1), payload: b(2)))
        case "pmessage" where parts.count == 4:
            self.yield(.patternMessage(pattern: b(1), channel: b(2), payload: b(3)))
        case "smessage" where parts.count == 3:
            self.yield(.shardMessage(channel: b(1), payload: b(2)))
        case "subscribe", "psubscribe", "ssubscribe":
            let channel = b(1)
            self.yield(
                .subscribed(kind: kind, channel: channel, count: Int(parts.count > 2 ? parts[2].integer ?? 0 : 0)))
            let done: [CheckedContinuation<Result<Void, RESPError>, Never>] = self.state.withLock { state in
                var done: [CheckedContinuation<Result<Void, RESPError>, Never>] = []
                state.waiters = state.waiters.compactMap { waiter in
                    var waiter = waiter
                    if waiter.kind == kind { waiter.remaining.remove(channel) }
                    if waiter.remaining.isEmpty {
                        done.append(waiter.continuation)
                        return nil
                    }
                    return waiter
                }
                return done
            }
            for continuation in done { continuation.resume(returning: .success(())) }
        default:
            break
        }
    }

    /// The connection dropped: fail waiting subscribers, then reconnect and resubscribe in the background.
    private func connectionClosed(_ error: RESPError, generation: UInt64) {
        // A late close callback of an older connection must not tear down the current one, nor may the close
        // of an attempt that was never adopted.
        guard self.state.withLock({ $0.generation == generation && $0.adopted == generation }) else { return }
        self.failWaiters(error)
        let start = self.state.withLock { state in
            guard !state.closed, !state.reconnecting, state.generation == generation else { return false }
            state.reconnecting = true
            state.connection = nil
            return true
        }
        guard start else { return }
        Task { await self.resubscribe() }
    }

    private func resubscribe() async {
        while !self.state.withLock({ $0.closed }) {
            do throws(RESPError) {
                let connection = try await self.connection()
                let (channels, patterns, shards) = self.state.withLock { state in
                    state.reconnecting = false
                    return (state.channels, state.patterns, state.shardChannels)
                }
                if !channels.isEmpty {
                    try connection.sendWithoutReply(RESPCommand("SUBSCRIBE", arguments: Array(channels)))
                }
                if !patterns.isEmpty {
                    try connection.sendWithoutReply(RESPCommand("PSUBSCRIBE", arguments: Array(patterns)))
                }
                if !shards.isEmpty {
                    try connection.sendWithoutReply(RESPCommand("SSUBSCRIBE", arguments: Array(shards)))
                }
                return
            } catch {
                if case .clientClosed = error { return }
                try? await Task.sleep(for: self.client.configuration.reconnect.maxDelay)
            }
        }
    }
}

extension RESPClient {
    /// A new subscription with a connection of its own (made on its first `subscribe`).
    public func subscription() -> RESPSubscription {
        RESPSubscription(client: self)
    }
}
