/// `FlightData`: one Arrow IPC message (flatbuffer header + body) on a Flight stream.
///
/// Decoding slices `dataHeader`, `appMetadata` and `dataBody` out of the received message (no copy).
/// ``encodedParts(descriptor:dataHeader:appMetadata:body:bodyLength:)`` encodes without copying the body:
/// the result is the protobuf prefix bytes followed by the caller's body slices.
public struct FlightData: ProtoMessage {
    public var flightDescriptor: FlightDescriptor?
    public var dataHeader: ArraySlice<UInt8> = []
    public var appMetadata: ArraySlice<UInt8> = []
    public var dataBody: ArraySlice<UInt8> = []

    public init() {}

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.flightDescriptor = try reader.readMessage(key, merging: self.flightDescriptor)
        case 2: self.dataHeader = try reader.readBytes(key)
        case 3: self.appMetadata = try reader.readBytes(key)
        case 1000: self.dataBody = try reader.readBytes(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        if let descriptor = self.flightDescriptor { writer.writeMessage(field: 1, descriptor) }
        writer.writeNonEmptyBytes(field: 2, self.dataHeader)
        writer.writeNonEmptyBytes(field: 3, self.appMetadata)
        writer.writeNonEmptyBytes(field: 1000, self.dataBody)
    }

    /// The encoded message as slices: the fields before the body (copied into one small array: the
    /// descriptor, the flatbuffer header, app metadata and the body's tag and length), then `body` as given.
    ///
    /// - Parameter bodyLength: the sum of the sizes of `body`.
    public static func encodedParts(descriptor: FlightDescriptor? = nil, dataHeader: some Collection<UInt8>,
                                    appMetadata: some Collection<UInt8> = [UInt8](), body: [ArraySlice<UInt8>],
                                    bodyLength: Int) -> [ArraySlice<UInt8>] {
        var writer = ProtoWriter(capacity: dataHeader.count + appMetadata.count + 32)
        if let descriptor { writer.writeMessage(field: 1, descriptor) }
        if !dataHeader.isEmpty { writer.writeBytes(field: 2, dataHeader) }
        if !appMetadata.isEmpty { writer.writeBytes(field: 3, appMetadata) }
        guard bodyLength > 0 else { return [writer.bytes[...]] }
        writer.writeTag(field: 1000, wireType: .lengthDelimited)
        writer.writeVarint(UInt64(bodyLength))
        var parts: [ArraySlice<UInt8>] = [writer.bytes[...]]
        parts.reserveCapacity(body.count + 1)
        for slice in body where !slice.isEmpty { parts.append(slice) }
        return parts
    }
}
