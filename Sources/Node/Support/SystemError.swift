internal import Glibc

/// The text of an `errno` value, for error messages.
package enum SystemError {
    package static func message(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}
