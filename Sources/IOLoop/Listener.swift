internal import Glibc
import Synchronization

/// Who a server lets in: connection caps, and how long a connection may take to finish its handshake.
package struct ListenerPolicy: Sendable {
    /// Most open connections; lowered to fit the descriptor limit (so the caps, not EMFILE, decide who is served).
    package var maxConnections: Int
    /// Most open connections from one peer IP address.
    package var maxConnectionsPerPeer: Int
    /// A connection not established (``ConnectionRegistry/connectionEstablished(key:)``) within this is closed
    /// (nil: never).
    package var handshakeTimeout: Duration?

    /// A policy with these caps and timeout.
    package init(maxConnections: Int, maxConnectionsPerPeer: Int, handshakeTimeout: Duration?) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerPeer = maxConnectionsPerPeer
        self.handshakeTimeout = handshakeTimeout
    }
}

/// Why the listener closes a connection it admitted.
package enum Eviction: Sendable, Equatable {
    /// The oldest connection still in its handshake, closed to make room for a new one at a cap.
    case connectionLimit
    /// Its handshake did not finish within ``ListenerPolicy/handshakeTimeout``.
    case handshakeTimeout
}

/// The open connections of one server, counted in total and per peer, each with its loop and handler id.
///
/// At a cap the oldest connection still in its handshake is evicted to make room (a newcomer is refused only
/// when there is none), so idle half-open connections cannot lock established clients out.
package final class ConnectionRegistry: Sendable {
    /// The policy in force.
    package let policy: ListenerPolicy
    /// `maxConnections`, lowered to fit the soft descriptor limit.
    package let connectionCap: Int

    /// One open connection as the registry sees it.
    private struct Entry {
        var peer: PeerAddress
        var loop: EventLoop?
        var handlerID: UInt64 = 0
        /// Still in its handshake (not yet ``connectionEstablished(key:)``).
        var handshaking = true
        var evicted = false
        let opened: ContinuousClock.Instant
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        var perPeer: [PeerAddress: Int] = [:]
        var nextKey = 1
        var refused = 0
        var evicted = 0
        var timedOut = 0
        /// Entries marked evicted whose connection has not closed yet (they no longer count against the caps).
        var evictedOpen = 0
    }

    private let state = Mutex(State())

    /// A registry enforcing `policy`.
    package init(policy: ListenerPolicy) {
        self.policy = policy
        self.connectionCap = min(policy.maxConnections, SocketCalls.connectionsForOpenFileLimit())
    }

    /// Outcome of a new connection at the listener.
    package enum Admission {
        /// Serve it under `key`; first close `evict` (the oldest connection still in its handshake) if set.
        case admitted(key: Int, evict: (loop: EventLoop, handlerID: UInt64)?)
        /// Over a cap with no handshaking connection to close: refuse the newcomer.
        case refused
    }

    /// Registers a new connection from `peer`, applying the total and per-peer caps.
    package func reserve(peer: PeerAddress) -> Admission {
        let policy = self.policy
        let cap = self.connectionCap
        return self.state.withLock { r -> Admission in
            let live = r.entries.count - r.evictedOpen
            let fromPeer = r.perPeer[peer, default: 0]
            var evict: (loop: EventLoop, handlerID: UInt64)?
            if live >= cap || fromPeer >= policy.maxConnectionsPerPeer {
                let peerOnly = live < cap
                var victim: (key: Int, opened: ContinuousClock.Instant)?
                for (key, e) in r.entries where e.handshaking && !e.evicted && e.loop != nil {
                    if peerOnly && e.peer != peer { continue }
                    if let v = victim, v.opened <= e.opened { continue }
                    victim = (key, e.opened)
                }
                guard let victim, let entry = r.entries[victim.key], let loop = entry.loop else {
                    r.refused += 1
                    return .refused
                }
                r.entries[victim.key]?.evicted = true
                r.evicted += 1
                r.evictedOpen += 1
                evict = (loop, entry.handlerID)
            }
            let key = r.nextKey
            r.nextKey += 1
            r.entries[key] = Entry(peer: peer, opened: .now)
            r.perPeer[peer] = fromPeer + 1
            return .admitted(key: key, evict: evict)
        }
    }

    /// The connection `key` runs on `loop` as handler `handlerID`.
    package func connectionStarted(key: Int, loop: EventLoop, handlerID: UInt64) {
        self.state.withLock { r in
            r.entries[key]?.loop = loop
            r.entries[key]?.handlerID = handlerID
        }
    }

    /// The connection finished its handshake: it is no longer first in line for eviction, nor timed.
    package func connectionEstablished(key: Int) {
        self.state.withLock { $0.entries[key]?.handshaking = false }
    }

    /// The connection closed.
    package func connectionEnded(key: Int) {
        self.state.withLock { r in
            guard let e = r.entries.removeValue(forKey: key) else { return }
            if e.evicted { r.evictedOpen -= 1 }
            let n = r.perPeer[e.peer, default: 1] - 1
            r.perPeer[e.peer] = n > 0 ? n : nil
        }
    }

    /// Connections still in their handshake after `handshakeTimeout`, marked evicted (each is returned once).
    package func expiredHandshakes(now: ContinuousClock.Instant) -> [(loop: EventLoop, handlerID: UInt64)] {
        guard let timeout = self.policy.handshakeTimeout else { return [] }
        return self.state.withLock { r in
            var expired: [(loop: EventLoop, handlerID: UInt64)] = []
            for (key, e) in r.entries where e.handshaking && !e.evicted && now - e.opened > timeout {
                guard let loop = e.loop else { continue }
                r.entries[key]?.evicted = true
                r.evictedOpen += 1
                r.timedOut += 1
                expired.append((loop, e.handlerID))
            }
            return expired
        }
    }

    /// Open connections (including evicted ones not closed yet).
    package var openConnections: Int { self.state.withLock { $0.entries.count } }

    /// Connections refused and evicted at the caps, and closed at the handshake timeout, so far.
    package var counts: (refused: Int, evicted: Int, timedOut: Int) {
        self.state.withLock { ($0.refused, $0.evicted, $0.timedOut) }
    }

    /// Every started connection's loop and handler id.
    package var liveConnections: [(loop: EventLoop, handlerID: UInt64)] {
        self.state.withLock { r in r.entries.values.compactMap { e in e.loop.map { ($0, e.handlerID) } } }
    }
}

/// What a protocol's server does with the connections its ``Listener`` accepts.
package protocol ListenerDelegate: Sendable {
    /// Called on the listener's loop before a refused connection (over a cap) is closed: a last word to the
    /// client (best effort, non-blocking), or nothing.
    func refuse(fd: Int32)
    /// Called on the connection's loop: start serving `fd` (non-blocking, close-on-exec, TCP_NODELAY) from
    /// `peer` as `key`, and report the handler to the registry with ``ConnectionRegistry/connectionStarted(key:loop:handlerID:)``.
    func start(fd: Int32, key: Int, peer: PeerAddress, runner: LoopRunner)
    /// Called on the connection's loop: close handler `handlerID` (it may have closed already).
    func evict(handlerID: UInt64, reason: Eviction, runner: LoopRunner)
}

/// Accepts connections on one loop and hands each to a loop of the group, under the registry's caps, with
/// a spare-descriptor backoff when the process runs out of descriptors, and the handshake timeout.
package final class Listener: LoopHandler {
    private let fd: Int32
    private let registry: ConnectionRegistry
    private let group: EventLoopGroup
    private let delegate: any ListenerDelegate
    private var id: UInt64 = 0

    /// Out of descriptors: accepting is paused until then (the level-triggered listener would spin otherwise).
    private var pausedUntil: ContinuousClock.Instant?
    /// A descriptor kept in reserve: freed to accept-and-close one connection when the process is out of them.
    private var spareFD: Int32 = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    /// How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM.
    package static let exhaustionBackoff: Duration = .milliseconds(100)

    private init(fd: Int32, registry: ConnectionRegistry, group: EventLoopGroup, delegate: any ListenerDelegate) {
        self.fd = fd
        self.registry = registry
        self.group = group
        self.delegate = delegate
    }

    /// Starts accepting on the listening socket `fd` (owned from now on) on the group's first loop; returns the
    /// listener's handler id there (for ``stop(loop:id:)``) through `started`.
    package static func start(
        fd: Int32, registry: ConnectionRegistry, group: EventLoopGroup, delegate: any ListenerDelegate,
        started: @escaping @Sendable (UInt64) -> Void = { _ in }
    ) {
        group.loops[0].execute { runner in
            let listener = Listener(fd: fd, registry: registry, group: group, delegate: delegate)
            do {
                listener.id = try runner.register(fd: fd, events: Readiness.readable, handler: listener)
            } catch {
                listener.closeForShutdown(runner: runner)
                return
            }
            started(listener.id)
        }
    }

    /// Stops accepting and closes the listening socket (on the loop it runs on).
    package static func stop(loop: EventLoop, id: UInt64) {
        loop.execute { runner in (runner.handler(id) as? Listener)?.closeForShutdown(runner: runner) }
    }

    package func handleEvents(_ events: UInt32, runner: LoopRunner) {
        guard self.pausedUntil == nil else { return }
        for _ in 0..<256 {
            var peer = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &peer) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(self.fd, $0, &length) }
            }
            if client < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO, EPERM: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    self.backOff(runner: runner)
                    return
                default: return  // EAGAIN: nothing more pending
                }
            }
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            SocketCalls.setNoDelay(client)
            let address = PeerAddress(peer)
            switch self.registry.reserve(peer: address) {
            case .refused:
                self.delegate.refuse(fd: client)
                _ = Glibc.close(client)
            case .admitted(let key, let evict):
                let delegate = self.delegate
                if let evict {
                    let id = evict.handlerID
                    evict.loop.execute { runner in delegate.evict(handlerID: id, reason: .connectionLimit, runner: runner) }
                }
                self.group.nextLoop().execute { runner in
                    delegate.start(fd: client, key: key, peer: address, runner: runner)
                }
            }
        }
    }

    /// Out of descriptors or memory: refuse the connection at the head of the queue with the spare descriptor
    /// (so its client learns at once), then stop polling the listener for a moment.
    private func backOff(runner: LoopRunner) {
        if self.spareFD >= 0 {
            _ = Glibc.close(self.spareFD)
            let c = accept(self.fd, nil, nil)
            if c >= 0 { _ = Glibc.close(c) }
            self.spareFD = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
        }
        self.pausedUntil = ContinuousClock.now.advanced(by: Self.exhaustionBackoff)
        runner.modify(fd: self.fd, id: self.id, events: 0)
    }

    package func tick(now: ContinuousClock.Instant, runner: LoopRunner) {
        let delegate = self.delegate
        for victim in self.registry.expiredHandshakes(now: now) {
            let id = victim.handlerID
            victim.loop.execute { runner in delegate.evict(handlerID: id, reason: .handshakeTimeout, runner: runner) }
        }
        guard let until = self.pausedUntil, now >= until else { return }
        self.pausedUntil = nil
        runner.modify(fd: self.fd, id: self.id, events: Readiness.readable)
    }

    package func closeForShutdown(runner: LoopRunner) {
        guard self.fd >= 0, self.spareFD != -2 else { return }
        runner.unregister(fd: self.fd, id: self.id)
        _ = Glibc.close(self.fd)
        if self.spareFD >= 0 { _ = Glibc.close(self.spareFD) }
        self.spareFD = -2
    }
}
