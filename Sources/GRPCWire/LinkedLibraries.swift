internal import CNGHTTP2
internal import COpenSSL

/// Versions of the C libraries GRPCWire is linked against (libnghttp2 for HTTP/2, OpenSSL for TLS).
///
/// Reading them proves at run time which libraries a (static) binary carries.
public enum LinkedLibraries {
    /// The libnghttp2 version string, e.g. `1.52.0`.
    public static var nghttp2Version: String {
        guard let info = nghttp2_version(0), let text = info.pointee.version_str else { return "unknown" }
        return String(cString: text)
    }

    /// The OpenSSL version line, e.g. `OpenSSL 3.0.19 27 Jan 2026`.
    public static var openSSLVersion: String {
        guard let text = OpenSSL_version(Int32(OPENSSL_VERSION)) else { return "unknown" }
        return String(cString: text)
    }
}
