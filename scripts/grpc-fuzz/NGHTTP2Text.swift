// Stand-in for NGHTTP2Calls.errorText so GRPCWireError.swift compiles without libnghttp2 in the fuzz build.
enum NGHTTP2Calls {
    static func errorText(_ code: Int32) -> String { "nghttp2 error \(code)" }
}
