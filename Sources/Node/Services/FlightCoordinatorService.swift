public import FlightProto
public import FlightRPC

/// The Flight service of `valkeyflight coordinator`: the management actions over Valkey, no data. Data RPCs
/// answer UNIMPLEMENTED (the batches live on the Flight nodes).
public final class FlightCoordinatorService: FlightService {
    public let coordinator: Coordinator

    public init(coordinator: Coordinator) {
        self.coordinator = coordinator
    }

    public func listActions(_ responses: FlightResponseStream<ActionType>, _ context: FlightCallContext) async throws {
        for action in CoordinatorActions.actions { try await responses.send(action) }
    }

    public func doAction(_ action: FlightAction, _ responses: FlightResponseStream<FlightResult>, _ context: FlightCallContext) async throws {
        for json in try await CoordinatorActions(coordinator: self.coordinator, store: nil).run(action) {
            try await responses.send(FlightResult(Array(json.utf8)))
        }
    }
}
