import ArrowIPC
import FlightProto
import FlightRPC
import Foundation
import Node
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A private valkey-server for one test, always stopped afterwards (unix socket, so no port race).
func withPrivateValkey<T>(appendOnly: Bool = false, directory: String? = nil,
                          _ body: (EmbeddedValkeyServer) async throws -> T) async throws -> T {
    let binary = try EmbeddedValkeyServer.locateBinary(explicitPath: ProcessInfo.processInfo.environment["VALKEYFLIGHT_VALKEY_SERVER"])
    let server = try await EmbeddedValkeyServer.start(binary: binary, directory: directory, appendOnly: appendOnly)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// A node running in this process (ValkeyFlightNode.run) until the scope ends.
struct InProcessNode: Sendable {
    let location: String
    let client: FlightClient

    /// Runs `configuration` (listen 127.0.0.1:0) for the duration of `body`, then stops it gracefully.
    static func with<T: Sendable>(_ configuration: NodeConfiguration, processor: (any BatchProcessor)? = nil,
                                  _ body: (InProcessNode) async throws -> T) async throws -> T {
        var configuration = configuration
        configuration.listen = HostPort(host: "127.0.0.1", port: 0)
        let ready = TestSlot<String>()
        let stop = TestSlot<String>()
        let node = Task {
            do {
                try await ValkeyFlightNode.run(configuration, processor: processor, onReady: { ready.fill($0) },
                                               until: { await stop.value })
            } catch {
                ready.fill("error: \(error)")
                throw error
            }
        }
        let location = await ready.value
        guard !location.hasPrefix("error: ") else {
            _ = try await node.value
            throw FlightTestError(location)
        }
        let client = try FlightClient(location: FlightLocation(parsing: location))
        do {
            let result = try await body(InProcessNode(location: location, client: client))
            client.close()
            stop.fill("test done")
            try await node.value
            return result
        } catch {
            client.close()
            stop.fill("test failed")
            _ = try? await node.value
            throw error
        }
    }

    /// Submits `ipc` (an IPC stream) as `QUEUE/ID`, or `[QUEUE]` when `id` is nil; returns the PutResult JSON.
    func submit(_ ipc: [UInt8], queue: String, id: String? = nil) async throws -> PyJSON {
        let results = try await self.client.put(FlightDescriptor(path: [queue] + (id.map { [$0] } ?? [])), ipc: ipc[...])
        return try PyJSON.lastLine(of: String(decoding: results.last?.value ?? [], as: UTF8.self))
    }

    func action(_ type: String, _ body: String = "") async throws -> [PyJSON] {
        try await self.client.doAction(FlightAction(type: type, body: Array(body.utf8)[...])).map {
            try PyJSON.lastLine(of: String(decoding: $0.value, as: UTF8.self))
        }
    }

    func status(_ key: String) async throws -> PyJSON {
        try await self.action("status", key).first ?? .null
    }

    /// Polls the status until the batch is finished or `timeout` passes (then returns the last status).
    func waitFinished(_ key: String, timeout: Duration = .seconds(30)) async throws -> PyJSON {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(5)
        while true {
            let status = try await self.status(key)
            if ["completed", "failed", "cancelled"].contains(status["status"].string ?? "") || ContinuousClock.now > deadline {
                return status
            }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    /// The stored stream of `key` (all FlightData messages reframed as one IPC stream).
    func fetch(_ key: String) async throws -> [UInt8] {
        let reader = try await self.client.doGet(Ticket(Array(key.utf8)))
        var bytes: [UInt8] = []
        while let data = try await reader.nextData() {
            guard !data.dataHeader.isEmpty else { continue }
            bytes += EncodedMessage.frame(header: data.dataHeader)
            bytes += data.dataBody
        }
        return bytes + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
    }
}

/// A value set once and awaited (test helper; never blocks a thread).
final class TestSlot<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value?
    private var waiters: [CheckedContinuation<Value, Never>] = []

    func fill(_ value: Value) {
        self.lock.lock()
        guard self.stored == nil else { return self.lock.unlock() }
        self.stored = value
        let waiters = self.waiters
        self.waiters = []
        self.lock.unlock()
        for waiter in waiters { waiter.resume(returning: value) }
    }

    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                self.lock.lock()
                if let value = self.stored {
                    self.lock.unlock()
                    continuation.resume(returning: value)
                } else {
                    self.waiters.append(continuation)
                    self.lock.unlock()
                }
            }
        }
    }
}

/// Sample batches for pipeline tests.
enum PipelineData {
    /// An IPC stream of one record batch: `id` int64 0..<rows and `price` float64 = id × 0.5 + offset.
    static func stream(rows: Int, offset: Double = 0) throws -> [UInt8] {
        let schema = Schema([Field("id", .int(.int64)), Field("price", .floatingPoint(.double))])
        let batch = try RecordBatch(schema: schema, columns: [
            .primitive((0..<Int64(rows)).map { Optional($0) }),
            .primitive((0..<rows).map { Optional(Double($0) * 0.5 + offset) }),
        ])
        var writer = IPCWriter(schema: schema, format: .stream)
        try writer.write(batch)
        writer.finish()
        return writer.bytes()
    }

    /// The `price` column of an IPC stream.
    static func prices(_ stream: [UInt8]) throws -> [Double?] {
        var reader = try IPCStreamReader(stream, options: .untrusted)
        var prices: [Double?] = []
        while let batch = try reader.next() {
            guard let column = batch.column(named: "price") else { continue }
            prices += try column.values(as: Double.self)
        }
        return prices
    }
}

/// A shell script file for `--exec` (removed by the caller's scope).
func withScript<T>(_ text: String, _ body: (String) async throws -> T) async throws -> T {
    let path = NSTemporaryDirectory() + "vf-proc-\(UUID().uuidString).sh"
    try ("#!/bin/sh\n" + text + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    chmod(path, 0o755)
    defer { unlink(path) }
    return try await body(path)
}
