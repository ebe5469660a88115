// Messages of Arrow's Flight.proto (package arrow.flight.protocol), field numbers per PROTOCOLS.md §2.2.
// Bytes fields are slices of the decoded input: decoding copies no payload.

/// `HandshakeRequest` and `HandshakeResponse` (same fields).
public struct HandshakeMessage: ProtoMessage {
    public var protocolVersion: UInt64 = 0
    public var payload: ArraySlice<UInt8> = []

    public init() {}
    public init(protocolVersion: UInt64 = 0, payload: ArraySlice<UInt8>) {
        self.protocolVersion = protocolVersion
        self.payload = payload
    }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.protocolVersion = try reader.readUInt64(key)
        case 2: self.payload = try reader.readBytes(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        if self.protocolVersion != 0 { writer.writeUInt64(field: 1, self.protocolVersion) }
        writer.writeNonEmptyBytes(field: 2, self.payload)
    }
}

/// `BasicAuth` (username = 2, password = 3).
public struct BasicAuth: ProtoMessage {
    public var username = ""
    public var password = ""

    public init() {}
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 2: self.username = try reader.readString(key)
        case 3: self.password = try reader.readString(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        writer.writeNonEmptyString(field: 2, self.username)
        writer.writeNonEmptyString(field: 3, self.password)
    }
}

/// `ActionType`.
public struct ActionType: ProtoMessage {
    public var type = ""
    public var description = ""

    public init() {}
    public init(type: String, description: String) {
        self.type = type
        self.description = description
    }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.type = try reader.readString(key)
        case 2: self.description = try reader.readString(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        writer.writeNonEmptyString(field: 1, self.type)
        writer.writeNonEmptyString(field: 2, self.description)
    }
}

/// A message with one bytes field 1: `Criteria` (expression), `Result` (body), `SchemaResult` (schema),
/// `Ticket` (ticket), `PutResult` (app_metadata).
public struct BytesMessage: ProtoMessage {
    public var value: ArraySlice<UInt8> = []

    public init() {}
    public init(_ value: ArraySlice<UInt8>) { self.value = value }
    public init(_ value: [UInt8]) { self.value = value[...] }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        if key.number == 1 { self.value = try reader.readBytes(key) } else { try reader.skip(key) }
    }

    public func encode(into writer: inout ProtoWriter) {
        writer.writeNonEmptyBytes(field: 1, self.value)
    }
}

public typealias Criteria = BytesMessage
public typealias FlightResult = BytesMessage
public typealias SchemaResult = BytesMessage
public typealias Ticket = BytesMessage
public typealias PutResult = BytesMessage

/// `Action`.
public struct FlightAction: ProtoMessage {
    public var type = ""
    public var body: ArraySlice<UInt8> = []

    public init() {}
    public init(type: String, body: ArraySlice<UInt8> = []) {
        self.type = type
        self.body = body
    }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.type = try reader.readString(key)
        case 2: self.body = try reader.readBytes(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        writer.writeNonEmptyString(field: 1, self.type)
        writer.writeNonEmptyBytes(field: 2, self.body)
    }
}

/// `Location`.
public struct Location: ProtoMessage {
    public var uri = ""

    public init() {}
    public init(uri: String) { self.uri = uri }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        if key.number == 1 { self.uri = try reader.readString(key) } else { try reader.skip(key) }
    }

    public func encode(into writer: inout ProtoWriter) {
        writer.writeNonEmptyString(field: 1, self.uri)
    }
}

/// `FlightDescriptor`.
public struct FlightDescriptor: ProtoMessage {
    /// `DescriptorType`; unknown values are kept as read.
    public struct Kind: RawRepresentable, Sendable, Equatable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let unknown = Kind(rawValue: 0)
        public static let path = Kind(rawValue: 1)
        public static let cmd = Kind(rawValue: 2)
    }

    public var type = Kind.unknown
    public var cmd: ArraySlice<UInt8> = []
    public var path: [String] = []

    public init() {}
    public init(path: [String]) {
        self.type = .path
        self.path = path
    }
    public init(cmd: ArraySlice<UInt8>) {
        self.type = .cmd
        self.cmd = cmd
    }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.type = Kind(rawValue: try reader.readInt32(key))
        case 2: self.cmd = try reader.readBytes(key)
        case 3: self.path.append(try reader.readString(key))
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        if self.type.rawValue != 0 { writer.writeInt32(field: 1, self.type.rawValue) }
        writer.writeNonEmptyBytes(field: 2, self.cmd)
        for element in self.path { writer.writeString(field: 3, element) }
    }
}

/// `FlightEndpoint`.
public struct FlightEndpoint: ProtoMessage {
    public var ticket: Ticket?
    public var locations: [Location] = []
    public var expirationTime: ProtoTimestamp?
    public var appMetadata: ArraySlice<UInt8> = []

    public init() {}
    public init(ticket: Ticket, locations: [Location]) {
        self.ticket = ticket
        self.locations = locations
    }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.ticket = try reader.readMessage(key, merging: self.ticket)
        case 2: self.locations.append(try reader.readMessage(key))
        case 3: self.expirationTime = try reader.readMessage(key, merging: self.expirationTime)
        case 4: self.appMetadata = try reader.readBytes(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        if let ticket = self.ticket { writer.writeMessage(field: 1, ticket) }
        for location in self.locations { writer.writeMessage(field: 2, location) }
        if let expiration = self.expirationTime { writer.writeMessage(field: 3, expiration) }
        writer.writeNonEmptyBytes(field: 4, self.appMetadata)
    }
}

/// `FlightInfo`.
public struct FlightInfo: ProtoMessage {
    /// An encapsulated IPC Schema message (continuation marker, length, flatbuffer).
    public var schema: ArraySlice<UInt8> = []
    public var flightDescriptor: FlightDescriptor?
    public var endpoints: [FlightEndpoint] = []
    public var totalRecords: Int64 = 0
    public var totalBytes: Int64 = 0
    public var ordered = false
    public var appMetadata: ArraySlice<UInt8> = []

    public init() {}

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.schema = try reader.readBytes(key)
        case 2: self.flightDescriptor = try reader.readMessage(key, merging: self.flightDescriptor)
        case 3: self.endpoints.append(try reader.readMessage(key))
        case 4: self.totalRecords = try reader.readInt64(key)
        case 5: self.totalBytes = try reader.readInt64(key)
        case 6: self.ordered = try reader.readBool(key)
        case 7: self.appMetadata = try reader.readBytes(key)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        writer.writeNonEmptyBytes(field: 1, self.schema)
        if let descriptor = self.flightDescriptor { writer.writeMessage(field: 2, descriptor) }
        for endpoint in self.endpoints { writer.writeMessage(field: 3, endpoint) }
        if self.totalRecords != 0 { writer.writeInt64(field: 4, self.totalRecords) }
        if self.totalBytes != 0 { writer.writeInt64(field: 5, self.totalBytes) }
        if self.ordered { writer.writeBool(field: 6, true) }
        writer.writeNonEmptyBytes(field: 7, self.appMetadata)
    }
}

/// `PollInfo`.
public struct PollInfo: ProtoMessage {
    public var info: FlightInfo?
    public var flightDescriptor: FlightDescriptor?
    public var progress: Double?
    public var expirationTime: ProtoTimestamp?

    public init() {}

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        switch key.number {
        case 1: self.info = try reader.readMessage(key, merging: self.info)
        case 2: self.flightDescriptor = try reader.readMessage(key, merging: self.flightDescriptor)
        case 3: self.progress = try reader.readDouble(key)
        case 4: self.expirationTime = try reader.readMessage(key, merging: self.expirationTime)
        default: try reader.skip(key)
        }
    }

    public func encode(into writer: inout ProtoWriter) {
        if let info = self.info { writer.writeMessage(field: 1, info) }
        if let descriptor = self.flightDescriptor { writer.writeMessage(field: 2, descriptor) }
        if let progress = self.progress { writer.writeDouble(field: 3, progress) }
        if let expiration = self.expirationTime { writer.writeMessage(field: 4, expiration) }
    }
}

/// `CancelFlightInfoRequest`.
public struct CancelFlightInfoRequest: ProtoMessage {
    public var info: FlightInfo?

    public init() {}

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        if key.number == 1 { self.info = try reader.readMessage(key, merging: self.info) } else { try reader.skip(key) }
    }

    public func encode(into writer: inout ProtoWriter) {
        if let info = self.info { writer.writeMessage(field: 1, info) }
    }
}

/// A message with one enum field 1: `CancelFlightInfoResult` (CancelStatus) and `CloseSessionResult`
/// (CloseSessionStatus). Values: 0 UNSPECIFIED, 1 CANCELLED/CLOSED, 2 CANCELLING/CLOSING, 3 NOT_CANCELLABLE/NOT_CLOSEABLE.
public struct StatusMessage: ProtoMessage {
    public var status: Int32 = 0

    public init() {}
    public init(status: Int32) { self.status = status }

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        if key.number == 1 { self.status = try reader.readInt32(key) } else { try reader.skip(key) }
    }

    public func encode(into writer: inout ProtoWriter) {
        if self.status != 0 { writer.writeInt32(field: 1, self.status) }
    }
}

public typealias CancelFlightInfoResult = StatusMessage
public typealias CloseSessionResult = StatusMessage

/// `RenewFlightEndpointRequest`.
public struct RenewFlightEndpointRequest: ProtoMessage {
    public var endpoint: FlightEndpoint?

    public init() {}

    public mutating func decodeField(_ key: ProtoFieldKey, from reader: inout ProtoReader) throws(FlightProtoError) {
        if key.number == 1 { self.endpoint = try reader.readMessage(key, merging: self.endpoint) } else { try reader.skip(key) }
    }

    public func encode(into writer: inout ProtoWriter) {
        if let endpoint = self.endpoint { writer.writeMessage(field: 1, endpoint) }
    }
}
