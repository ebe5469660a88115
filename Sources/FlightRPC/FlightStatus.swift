internal import ArrowIPC
package import GRPCWire
internal import FlightProto

/// The one place errors become gRPC statuses, as Flight users expect (the ValkeyFlight contract (CONTRACT.md) §2).
package enum FlightStatus {
    package static func from(_ error: any Error) -> GRPCStatus {
        switch error {
        case let status as GRPCStatus:
            return status
        case let error as any GRPCStatusConvertible:
            return error.grpcStatus
        case let error as FlightRPCError:
            return GRPCStatus(.invalidArgument, error.description)
        case let error as ArrowIPCError:
            if case .limitExceeded = error { return GRPCStatus(.resourceExhausted, "Arrow IPC: \(error)") }
            return GRPCStatus(.invalidArgument, "Arrow IPC: \(error)")
        case let error as FlightProtoError:
            return GRPCStatus(.invalidArgument, "malformed request message: \(error)")
        case is CancellationError:
            return GRPCStatus(.cancelled, "cancelled")
        default:
            return GRPCStatus(.internal, "\(error)")
        }
    }
}
