// swift-tools-version:6.2
import PackageDescription

/// Settings every target of ours gets: Swift 6 mode (the tools default), the upcoming features of STYLE.md,
/// and warnings as errors.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "ValkeyFlight",
    products: [
        .executable(name: "valkeyflight", targets: ["valkeyflight"]),
        .library(name: "ArrowIPC", targets: ["ArrowIPC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C libraries: module maps over Debian's libnghttp2-dev and libssl-dev.
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // epoll and eventfd headers (Swift's Glibc module does not export them).
        .systemLibrary(name: "CEpoll"),
        // glibc's <malloc.h> (mallopt, malloc_trim): the I/O layer's policy for freed message memory.
        .systemLibrary(name: "CMalloc"),
        // posix_spawn_file_actions_addclosefrom_np (glibc 2.34+), which Swift's Glibc module does not export.
        .systemLibrary(name: "CSpawn"),

        // Standard-library-only codecs.
        .target(name: "ArrowCompression", swiftSettings: strictSettings),
        .target(name: "ArrowIPC", dependencies: ["ArrowCompression"], swiftSettings: strictSettings),
        .target(name: "FlightProto", swiftSettings: strictSettings),
        // HTTP/1.1 request parser and response writer (standard library only): the node's HTTP endpoints.
        .target(name: "HTTP1", swiftSettings: strictSettings),
        // The I/O layer: epoll event loops, sockets, listener policies, byte budgets, TLS byte streams (OpenSSL).
        // Bytes and readiness only, never a protocol.
        .target(name: "IOLoop", dependencies: ["CEpoll", "COpenSSL", "CMalloc"], swiftSettings: strictSettings),
        // RESP3 Valkey client on the I/O layer.
        .target(name: "RESP", dependencies: ["IOLoop"], swiftSettings: strictSettings),
        // gRPC over nghttp2 on the I/O layer.
        .target(name: "GRPCWire", dependencies: ["IOLoop", "CNGHTTP2", "COpenSSL", "CEpoll"], swiftSettings: strictSettings),
        // The Flight RPC library: service protocol, server, client, auth, status mapping (no CLI, no services).
        .target(name: "FlightRPC", dependencies: ["ArrowIPC", "FlightProto", "GRPCWire"], swiftSettings: strictSettings),
        // The services and the runtime: batch store, coordinator in Valkey, workers, processors, modes.
        .target(
            name: "Node",
            dependencies: ["ArrowIPC", "FlightProto", "IOLoop", "GRPCWire", "FlightRPC", "RESP", "CSpawn", "HTTP1"],
            swiftSettings: strictSettings
        ),
        // The command line: options → configuration, then the runtime (nothing else).
        .target(
            name: "ValkeyFlightCLI",
            dependencies: [
                "Node", "FlightRPC", "ArrowIPC", "FlightProto", "GRPCWire", "RESP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(name: "valkeyflight", dependencies: ["ValkeyFlightCLI"], swiftSettings: strictSettings),

        .executableTarget(
            name: "ArrowIPCBenchmark",
            dependencies: ["ArrowIPC"],
            path: "Benchmarks/ArrowIPCBenchmark",
            swiftSettings: strictSettings
        ),
        // `FlightBenchmark`: our Flight client's side of scripts/bench-flight (docs/BENCHMARKS.md).
        .executableTarget(
            name: "FlightBenchmark",
            dependencies: ["Node", "FlightRPC", "ArrowIPC", "FlightProto"],
            path: "Benchmarks/FlightBenchmark",
            swiftSettings: strictSettings
        ),
        // `coordinator-bench`: register + claim + complete through the coordinator alone (docs/BENCHMARKS.md).
        .executableTarget(
            name: "coordinator-bench", dependencies: ["Node"], path: "Benchmarks/CoordinatorBenchmark",
            swiftSettings: strictSettings),
        // grpc.testing.TestService on GRPCWire + FlightProto, and the interop command (`grpc-interop`).
        .target(name: "GRPCInteropService", dependencies: ["GRPCWire", "FlightProto"], swiftSettings: strictSettings),
        .executableTarget(
            name: "grpc-interop", dependencies: ["GRPCInteropService", "GRPCWire", "FlightProto"], path: "Sources/GRPCInterop",
            swiftSettings: strictSettings),
        // `grpcwire-bench`: unary calls/s and streaming MB/s beside grpcio (docs/BENCHMARKS.md).
        .executableTarget(
            name: "grpcwire-bench", dependencies: ["GRPCInteropService", "GRPCWire"], path: "Benchmarks/GRPCWireBenchmarks",
            swiftSettings: strictSettings),

        // Child processes for the tests (posix_spawn, pipes read on threads of its own; no Foundation Process).
        .target(name: "TestProcessSupport", path: "Tests/TestProcessSupport", swiftSettings: strictSettings),
        .testTarget(name: "ArrowIPCTests", dependencies: ["ArrowIPC", "TestProcessSupport"], swiftSettings: strictSettings),
        .testTarget(name: "ArrowCompressionTests", dependencies: ["ArrowCompression", "TestProcessSupport"], swiftSettings: strictSettings),
        // LZ4 and ZSTD encode/decode GB/s beside pyarrow's C codecs (scripts/bench-compression).
        .executableTarget(
            name: "CompressionBenchmark", dependencies: ["ArrowCompression", "ArrowIPC", "IOLoop"], path: "Benchmarks/CompressionBenchmark",
            swiftSettings: strictSettings),
        .testTarget(name: "FlightProtoTests", dependencies: ["FlightProto"], swiftSettings: strictSettings),
        .testTarget(name: "GRPCWireTests", dependencies: ["GRPCWire", "GRPCInteropService", "FlightProto", "TestProcessSupport"], swiftSettings: strictSettings),
        .testTarget(name: "NodeTests", dependencies: ["Node", "FlightRPC", "ArrowIPC", "HTTP1", "TestProcessSupport"], swiftSettings: strictSettings),
        .testTarget(name: "RESPTests", dependencies: ["RESP", "TestProcessSupport"], swiftSettings: strictSettings),
        .testTarget(name: "IOLoopTests", dependencies: ["IOLoop"], swiftSettings: strictSettings),
        .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1"], swiftSettings: strictSettings),
        // `processor-bench`: per-batch cost of passthrough, --exec and --exec-persistent (scripts/bench-processors).
        .executableTarget(name: "processor-bench", dependencies: ["Node", "ArrowIPC"], path: "Benchmarks/ProcessorBenchmark",
                          swiftSettings: strictSettings),
        // Load generator for the RESP client (scripts/bench-valkey runs it beside redis-benchmark).
        .executableTarget(name: "resp-bench", dependencies: ["RESP"], path: "Benchmarks/RESPBenchmark", swiftSettings: strictSettings),
    ]
)
