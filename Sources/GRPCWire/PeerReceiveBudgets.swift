internal import IOLoop
import Synchronization

/// One receive budget per client address, shared by all of that peer's connections: opening more connections does
/// not buy one peer more of the server's budget (``GRPCServerConfiguration/peerReceiveBudget``).
final class PeerReceiveBudgets: Sendable {
    private let limit: Int
    private let budgets = Mutex<[PeerAddress: (budget: ByteBudget, connections: Int)]>([:])

    init(limit: Int) { self.limit = limit }

    /// The budget of `peer`, for one more connection of it (matched by one ``release(_:)``).
    func acquire(_ peer: PeerAddress) -> ByteBudget {
        self.budgets.withLock { budgets in
            if let entry = budgets[peer] {
                budgets[peer] = (entry.budget, entry.connections + 1)
                return entry.budget
            }
            let budget = ByteBudget(limit: self.limit)
            budgets[peer] = (budget, 1)
            return budget
        }
    }

    /// One connection of `peer` ended; its budget is forgotten with the last one.
    func release(_ peer: PeerAddress) {
        self.budgets.withLock { budgets in
            guard let entry = budgets[peer] else { return }
            budgets[peer] = entry.connections > 1 ? (entry.budget, entry.connections - 1) : nil
        }
    }
}
