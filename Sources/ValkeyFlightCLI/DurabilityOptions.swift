public import Node
public import ArgumentParser

/// `--data-dir`, `--fsync` and `--max-disk` of the modes that store batches (`flight`, `all`).
struct DurabilityOptions: ParsableArguments {
    @Option(help: "Durable batches: each stored batch (inputs and results) is an Arrow IPC stream file DIR/QUEUE/ID.arrows (results DIR/QUEUE/ID/result.arrows), on disk before the PutResult is sent and served from there; a node restarted with the same DIR and address serves them again. In 'all', the private valkey-server keeps its AOF in DIR/.valkey. (default: in memory only)")
    var dataDir: String?

    @Option(help: "With --data-dir: 'always' fsyncs every file and its directory before acknowledging it (survives power loss); 'never' leaves it to the OS (survives a crash of the process only; unsafe against power loss, faster). (default: always)")
    var fsync: FsyncPolicy?

    @Option(help: "With --data-dir: most bytes of batch files; DoPut beyond it fails RESOURCE_EXHAUSTED. BYTES: 500MB, 2GiB, … (default: no limit)")
    var maxDisk: ByteSizeOption?

    func apply(to configuration: inout NodeConfiguration) throws {
        configuration.dataDirectory = try Environment.resolve(self.dataDir, "DATA_DIR")
        configuration.fsync = try Environment.resolve(self.fsync, "FSYNC", default: .always)
        configuration.maxDisk = try Environment.resolve(self.maxDisk, "MAX_DISK")?.bytes ?? .max
        if configuration.dataDirectory == nil, self.fsync != nil || self.maxDisk != nil {
            throw NodeError.invalidArgument("--fsync and --max-disk need --data-dir")
        }
        if let directory = configuration.dataDirectory, directory.isEmpty {
            throw NodeError.invalidArgument("--data-dir must name a directory")
        }
    }
}

extension FsyncPolicy: ExpressibleByArgument {}
