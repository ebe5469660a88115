internal import ArrowIPC
internal import GRPCWire
internal import FlightProto

/// The one place errors become gRPC statuses, as Flight users expect (../shared/CONTRACT.md §2).
enum FlightStatus {
    static func from(_ error: any Error) -> GRPCStatus {
        switch error {
        case let status as GRPCStatus:
            return status
        case let error as NodeError:
            switch error {
            case .invalidArgument: return GRPCStatus(.invalidArgument, error.description)
            case .notFound: return GRPCStatus(.notFound, error.description)
            case .alreadyExists: return GRPCStatus(.alreadyExists, error.description)
            case .resourceExhausted: return GRPCStatus(.resourceExhausted, error.description)
            case .unavailable: return GRPCStatus(.unavailable, error.description)
            case .failedPrecondition, .staleToken: return GRPCStatus(.failedPrecondition, error.description)
            case .io: return GRPCStatus(.internal, error.description)
            }
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
