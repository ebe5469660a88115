public import FlightRPC
public import GRPCWire

/// The long-running modes of the ValkeyFlight contract (CONTRACT.md) §1.
public enum NodeMode: String, Sendable {
    /// Flight server + coordinator + worker pool in one process.
    case all
    /// Flight server only (with a Valkey URL it registers every stored batch).
    case flight
    /// Housekeeping and the management actions over Flight, no data.
    case coordinator
    /// Worker pool only.
    case worker

    var servesFlight: Bool { self != .worker }
    var runsWorkers: Bool { self == .all || self == .worker }
    var runsHousekeeping: Bool { self != .flight }
}

/// How a node's processors are made.
public enum ProcessorKind: Sendable, Equatable {
    /// The built-in processor that returns its input.
    case passthrough
    /// `--exec COMMAND` (one child per batch, or one long-lived child per slot when `persistent`).
    case exec(command: String, persistent: Bool)
}

/// Where a node serves HTTP (metrics, health, the JSON API and the dashboard).
public enum HTTPListen: Sendable, Equatable {
    /// On the gRPC port: connections that do not start with the HTTP/2 preface (with TLS: that negotiate ALPN
    /// `http/1.1` or none) are HTTP/1.1.
    case grpcPort
    /// On a port of its own (`--http-listen HOST:PORT`).
    case address(HostPort)
    /// Not at all (`--http-listen off`).
    case off
}

/// Everything a long-running mode needs, built by the command line from options and `VALKEYFLIGHT_*` variables.
public struct NodeConfiguration: Sendable {
    public var mode: NodeMode
    /// `--listen`.
    public var listen = HostPort(host: "127.0.0.1", port: 8815)
    /// `--advertise`; nil: the listen address with the port actually bound.
    public var advertise: String?
    /// `--valkey`; nil in mode `all` starts a private valkey-server.
    public var valkeyURL: String?
    /// `--valkey-server`: the binary for the embedded default.
    public var valkeyServerBinary: String?
    /// `--valkey-tls-ca`: CA file for `valkeys://`.
    public var valkeyTLSCA: String?
    /// `--valkey-replicas-ack`: replicas every acknowledged state change must reach first (WAIT); nil: 1 when
    /// Valkey has replicas, else 0.
    public var replicasAck: Int?
    /// `--ttl` of stored batches.
    public var ttl: Duration = .seconds(3600)
    /// `--max-memory` in bytes (`Int.max`: no limit).
    public var maxMemory = Int.max
    /// `--data-dir`: durable batches (nil: in memory only).
    public var dataDirectory: String?
    /// `--fsync`: when spilled files reach the disk.
    public var fsync = FsyncPolicy.always
    /// `--max-disk` in bytes of batch files (`Int.max`: no limit).
    public var maxDisk = Int.max
    /// `--tls-cert` / `--tls-key`.
    public var tls: TLSConfiguration?
    /// `--auth-basic`.
    public var auth: FlightBasicAuth?
    /// `--retention` of finished batches' status.
    public var retention: Duration = .seconds(7 * 86400)
    /// `--queue-shards Q=K,…`: shard counts written to Valkey at start (`Coordinator.configureShards`).
    public var queueShards: [String: Int] = [:]
    /// Worker options.
    public var worker = WorkerConfiguration()
    /// `--processor` / `--exec`.
    public var processor = ProcessorKind.passthrough
    /// `--tls-ca` used by workers to reach `grpc+tls` nodes.
    public var trustRoots: String?
    /// `--grace`: how long in-flight work may take to finish at shutdown.
    public var grace: Duration = .seconds(10)
    /// `--http-listen`: where HTTP is served (the default for `worker`, which has no gRPC port, is `.off` unless
    /// the command line gives `--listen`).
    public var httpListen = HTTPListen.grpcPort
    /// Where logs go.
    package var log: NodeLogger = .discard
    /// Print `listening on …` on stdout once serving (off for in-process benchmarks).
    package var announcesListening = true

    public init(mode: NodeMode) {
        self.mode = mode
    }
}
