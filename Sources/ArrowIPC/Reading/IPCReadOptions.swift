/// How much a reader checks before it hands out arrays.
public enum IPCValidation: Sendable, Equatable {
    /// O(buffers) checks of every offset, length and count against the message (always done).
    case structural
    /// Structural checks plus a scan of the data (offsets, UTF-8, union ids, dictionary indices, run ends).
    case full
}

/// Options for the IPC readers.
public struct IPCReadOptions: Sendable, Equatable {
    public var limits: IPCReadLimits
    public var validation: IPCValidation

    public init(limits: IPCReadLimits = .default, validation: IPCValidation = .structural) {
        self.limits = limits
        self.validation = validation
    }

    /// Structural validation with default limits.
    public static let `default` = IPCReadOptions()
    /// Full validation with default limits, for untrusted input.
    public static let untrusted = IPCReadOptions(validation: .full)
}

/// The two IPC container formats.
public enum IPCFormat: String, Sendable, Equatable {
    case stream, file

    static let fileMagic: [UInt8] = Array("ARROW1".utf8)

    /// The format of `bytes`: a file starts with `ARROW1`, anything else is read as a stream.
    public static func detect(_ bytes: some Collection<UInt8>) -> IPCFormat {
        bytes.starts(with: self.fileMagic) ? .file : .stream
    }
}
