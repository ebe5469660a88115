public import FlightRPC
public import GRPCWire

extension NodeError: GRPCStatusConvertible {
    /// The gRPC status of each case, as Flight users expect (the contract's status codes).
    public var grpcStatus: GRPCStatus {
        switch self {
        case .invalidArgument: return GRPCStatus(.invalidArgument, self.description)
        case .notFound: return GRPCStatus(.notFound, self.description)
        case .alreadyExists: return GRPCStatus(.alreadyExists, self.description)
        case .resourceExhausted: return GRPCStatus(.resourceExhausted, self.description)
        case .unavailable: return GRPCStatus(.unavailable, self.description)
        case .failedPrecondition, .staleToken: return GRPCStatus(.failedPrecondition, self.description)
        case .io: return GRPCStatus(.internal, self.description)
        }
    }
}
