import Synchronization

/// A byte budget shared across threads: a charge succeeds only while the total stays within `limit`.
///
/// Used for the receive side (a connection's and the whole server's buffered request bytes) and the send side
/// (a connection's queued response bytes).
final class ByteBudget: Sendable {
    /// Most bytes that may be charged at once.
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) { self.limit = max(0, limit) }

    /// Charges `bytes` unless that would pass the limit; returns whether it was charged.
    func tryCharge(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        var current = self.used.load(ordering: .relaxed)
        while true {
            let (next, overflow) = current.addingReportingOverflow(bytes)
            if overflow || next > self.limit { return false }
            let (exchanged, original) = self.used.weakCompareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Charges `bytes` unconditionally; returns the new total.
    @discardableResult
    func charge(_ bytes: Int) -> Int {
        guard bytes > 0 else { return self.used.load(ordering: .relaxed) }
        return self.used.wrappingAdd(bytes, ordering: .relaxed).newValue
    }

    /// Returns `bytes` charged earlier.
    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        self.used.wrappingSubtract(bytes, ordering: .relaxed)
    }

    /// Bytes charged now.
    var inUse: Int { self.used.load(ordering: .relaxed) }
}

/// Decides, before any byte of it is buffered, whether a server accepts a request message of an announced size.
///
/// GRPCWire calls ``admit(path:metadata:length:)`` on the connection's event-loop thread for every gRPC length
/// prefix it receives (after the `maxReceiveMessageSize` check); a returned status ends the call with it at once.
/// Every admitted message is later matched by one ``release(path:length:)`` (from any thread): when the handler
/// takes it with `receive()`, or when it is dropped (stream reset, call failed, connection lost).
/// Implementations must be fast and must not block.
public protocol GRPCMessageAdmission: Sendable {
    /// Admits (nil) or refuses (a status, e.g. RESOURCE_EXHAUSTED) a message of `length` bytes on a call of `path`.
    func admit(path: String, metadata: GRPCMetadata, length: Int) -> GRPCStatus?
    /// An admitted message of `length` bytes left GRPCWire's buffers (taken by its handler or dropped).
    func release(path: String, length: Int)
}

/// What a server stream charges for its received messages: returns charges and admissions when a message is
/// taken or dropped.
struct ReceiveCharges: Sendable {
    let connection: ByteBudget
    let server: ByteBudget
    let admission: (any GRPCMessageAdmission)?
    let path: String

    /// Charges `bytes` against the connection and then the server budget (all or nothing).
    func tryCharge(_ bytes: Int) -> Bool {
        guard self.connection.tryCharge(bytes) else { return false }
        guard self.server.tryCharge(bytes) else {
            self.connection.release(bytes)
            return false
        }
        return true
    }

    /// Returns `charged` buffer bytes and, when `admitted`, the admission of a `length`-byte message.
    func release(charged: Int, length: Int, admitted: Bool) {
        self.connection.release(charged)
        self.server.release(charged)
        if admitted { self.admission?.release(path: self.path, length: length) }
    }
}
