/// The dashboard at `GET /`: one static page compiled into the binary (no CDN, no build step).
enum Dashboard {
    /// Scripts and styles only from the page itself; fetches only to this origin.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"

    static let html = """
        <!doctype html><html><head><meta charset="utf-8"><title>ValkeyFlight</title></head>
        <body><h1>ValkeyFlight</h1></body></html>
        """
}
