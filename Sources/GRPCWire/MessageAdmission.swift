internal import IOLoop

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
