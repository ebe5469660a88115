internal import CNGHTTP2

/// The only file that calls libnghttp2 (1.52 `ssize_t` API). Every call checks its documented return codes.
enum NGHTTP2Calls {
    static let frameData = UInt8(NGHTTP2_DATA.rawValue)
    static let frameHeaders = UInt8(NGHTTP2_HEADERS.rawValue)
    static let frameRstStream = UInt8(NGHTTP2_RST_STREAM.rawValue)
    static let frameGoaway = UInt8(NGHTTP2_GOAWAY.rawValue)
    static let flagEndStream = UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)
    static let hcatRequest = NGHTTP2_HCAT_REQUEST.rawValue
    static let hcatResponse = NGHTTP2_HCAT_RESPONSE.rawValue
    static let hcatHeaders = NGHTTP2_HCAT_HEADERS.rawValue
    static let errDeferred = Int(NGHTTP2_ERR_DEFERRED.rawValue)
    static let errWouldBlock = Int32(NGHTTP2_ERR_WOULDBLOCK.rawValue)
    static let errTemporalCallbackFailure = Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
    static let errCallbackFailure = Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
    static let dataFlagEOF = NGHTTP2_DATA_FLAG_EOF.rawValue
    static let dataFlagNoEndStream = NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
    static let dataFlagNoCopy = NGHTTP2_DATA_FLAG_NO_COPY.rawValue
    static let errorNoError = NGHTTP2_NO_ERROR.rawValue
    static let errorCancel = NGHTTP2_CANCEL.rawValue
    static let errorInternal = NGHTTP2_INTERNAL_ERROR.rawValue
    static let errorProtocol = NGHTTP2_PROTOCOL_ERROR.rawValue
    static let errorRefusedStream = NGHTTP2_REFUSED_STREAM.rawValue
    static let errorEnhanceYourCalm = NGHTTP2_ENHANCE_YOUR_CALM.rawValue
    /// `mem_recv`: the peer floods us (too many SETTINGS/PING acks pending, rapid resets, empty frames).
    static let errFlooded = Int32(NGHTTP2_ERR_FLOODED.rawValue)

    /// nghttp2's text for a library error code.
    static func errorText(_ code: Int32) -> String {
        guard let text = nghttp2_strerror(code) else { return "unknown" }
        return String(cString: text)
    }

    /// Connection-level settings we announce.
    struct Settings {
        var maxConcurrentStreams: UInt32
        var initialWindowSize: UInt32
        var maxFrameSize: UInt32
        var maxHeaderListSize: UInt32
        var connectionWindowSize: Int32
        var enablePush: Bool
    }

    /// Creates a server or client session whose callbacks reach `owner`, and submits our SETTINGS and the
    /// connection window.
    /// - Throws: `.nghttp2` when allocation or submission fails.
    static func makeSession(server: Bool, owner: H2Connection, settings: Settings) throws(GRPCWireError)
        -> OpaquePointer
    {
        var callbacksPtr: OpaquePointer?
        var rv = nghttp2_session_callbacks_new(&callbacksPtr)
        guard rv == 0, let callbacks = callbacksPtr else {
            throw .nghttp2(call: "nghttp2_session_callbacks_new", code: rv)
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, nghttp2OnBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, nghttp2OnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, nghttp2OnFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, nghttp2OnDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, nghttp2OnStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, nghttp2OnFrameSend)
        nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, nghttp2OnFrameNotSend)
        nghttp2_session_callbacks_set_send_data_callback(callbacks, nghttp2SendData)
        nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, nghttp2ReadLength)

        var optionPtr: OpaquePointer?
        rv = nghttp2_option_new(&optionPtr)
        guard rv == 0, let option = optionPtr else { throw .nghttp2(call: "nghttp2_option_new", code: rv) }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_peer_max_concurrent_streams(option, 1000)

        var sessionPtr: OpaquePointer?
        let ud = Unmanaged.passUnretained(owner).toOpaque()
        rv =
            server
            ? nghttp2_session_server_new2(&sessionPtr, callbacks, ud, option)
            : nghttp2_session_client_new2(&sessionPtr, callbacks, ud, option)
        guard rv == 0, let session = sessionPtr else { throw .nghttp2(call: "nghttp2_session_new2", code: rv) }

        var iv: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: settings.maxFrameSize),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: settings.maxHeaderListSize),
        ]
        if !server {
            iv.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0))
        }
        rv = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
        guard rv == 0 else {
            nghttp2_session_del(session)
            throw .nghttp2(call: "nghttp2_submit_settings", code: rv)
        }
        rv = nghttp2_session_set_local_window_size(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize)
        guard rv == 0 else {
            nghttp2_session_del(session)
            throw .nghttp2(call: "nghttp2_session_set_local_window_size", code: rv)
        }
        return session
    }

    static func deleteSession(_ session: OpaquePointer) { nghttp2_session_del(session) }

    /// Feeds received bytes. Returns nil on success, the error code when the connection must close.
    static func memRecv(_ session: OpaquePointer, _ bytes: UnsafeRawBufferPointer) -> Int32? {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        let rv = nghttp2_session_mem_recv(session, base, bytes.count)
        if rv < 0 { return Int32(truncatingIfNeeded: rv) }
        // nghttp2 consumes everything it does not fail on.
        return rv == bytes.count ? nil : Int32(NGHTTP2_ERR_PROTO.rawValue)
    }

    /// Produces the next chunk of outgoing bytes: `.bytes` (valid until the next call), `.done`, or `.failed`.
    static func memSend(_ session: OpaquePointer, _ body: (UnsafeRawBufferPointer) -> Void) -> Int32? {
        var ptr: UnsafePointer<UInt8>?
        let rv = nghttp2_session_mem_send(session, &ptr)
        if rv < 0 { return Int32(truncatingIfNeeded: rv) }
        if rv == 0 { return 0 }
        if let ptr { body(UnsafeRawBufferPointer(start: ptr, count: rv)) }
        return 1
    }

    static func wantRead(_ session: OpaquePointer) -> Bool { nghttp2_session_want_read(session) != 0 }
    static func wantWrite(_ session: OpaquePointer) -> Bool { nghttp2_session_want_write(session) != 0 }

    /// Calls `body` with a C array of header pairs pointing into one buffer (nghttp2 copies them).
    private static func withNV<T>(_ headers: [(String, String)], _ body: (UnsafeMutablePointer<nghttp2_nv>, Int) -> T)
        -> T
    {
        var storage: [UInt8] = []
        var spans: [(Int, Int, Int, Int)] = []
        for (name, value) in headers {
            let n0 = storage.count
            storage.append(contentsOf: name.utf8)
            let v0 = storage.count
            storage.append(contentsOf: value.utf8)
            spans.append((n0, v0 - n0, v0, storage.count - v0))
        }
        storage.append(0)
        return storage.withUnsafeMutableBufferPointer { buf in
            var nvs = spans.map { s in
                nghttp2_nv(
                    name: buf.baseAddress! + s.0, value: buf.baseAddress! + s.2, namelen: s.1, valuelen: s.3,
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nvs.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }

    private static func dataProvider() -> nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: nghttp2ReadData)
    }

    /// Outcome of submitting HEADERS (response, trailers) on a stream.
    enum SubmitOutcome: Equatable {
        case submitted
        /// The stream is closed, unknown or already answered (`NGHTTP2_ERR_INVALID_ARGUMENT`,
        /// `NGHTTP2_ERR_DATA_EXIST`, `NGHTTP2_ERR_PROTO`, `NGHTTP2_ERR_STREAM_CLOSED`).
        case streamUnusable(Int32)
        /// nghttp2 is out of memory (`NGHTTP2_ERR_NOMEM`) or failed otherwise.
        case failed(Int32)
    }

    private static func outcome(_ rv: Int32) -> SubmitOutcome {
        switch rv {
        case 0: return .submitted
        case Int32(NGHTTP2_ERR_INVALID_ARGUMENT.rawValue), Int32(NGHTTP2_ERR_DATA_EXIST.rawValue),
            Int32(NGHTTP2_ERR_PROTO.rawValue), Int32(NGHTTP2_ERR_STREAM_CLOSED.rawValue):
            return .streamUnusable(rv)
        default: return .failed(rv)
        }
    }

    /// Submits response HEADERS, with a data provider unless `endStream` (Trailers-Only / headers-only).
    static func submitResponse(_ session: OpaquePointer, streamID: Int32, headers: [(String, String)], endStream: Bool)
        -> SubmitOutcome
    {
        self.outcome(
            self.withNV(headers) { nva, count in
                if endStream {
                    return nghttp2_submit_response(session, streamID, nva, count, nil)
                }
                var provider = self.dataProvider()
                return nghttp2_submit_response(session, streamID, nva, count, &provider)
            })
    }

    /// Submits a request with a data provider; returns the new stream id or a negative error
    /// (`NGHTTP2_ERR_NOMEM`, `NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE` when ids are exhausted,
    /// `NGHTTP2_ERR_INVALID_ARGUMENT`,
    /// `NGHTTP2_ERR_PROTO`).
    static func submitRequest(_ session: OpaquePointer, headers: [(String, String)]) -> Int32 {
        self.withNV(headers) { nva, count in
            var provider = self.dataProvider()
            return nghttp2_submit_request(session, nil, nva, count, &provider, nil)
        }
    }

    /// Submits trailers (HEADERS with END_STREAM).
    static func submitTrailer(_ session: OpaquePointer, streamID: Int32, headers: [(String, String)]) -> SubmitOutcome {
        self.outcome(self.withNV(headers) { nva, count in nghttp2_submit_trailer(session, streamID, nva, count) })
    }

    /// Submits RST_STREAM; errors (stream already gone) are ignored by design.
    static func submitReset(_ session: OpaquePointer, streamID: Int32, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, errorCode)
    }

    /// Resumes a deferred data provider; false when the stream has no deferred data (harmless).
    @discardableResult
    static func resumeData(_ session: OpaquePointer, streamID: Int32) -> Bool {
        nghttp2_session_resume_data(session, streamID) == 0
    }

    /// Returns `bytes` of receive window for a stream (and the connection).
    static func consume(_ session: OpaquePointer, streamID: Int32, bytes: Int) {
        guard bytes > 0 else { return }
        let rv = nghttp2_session_consume(session, streamID, bytes)
        if rv == Int32(NGHTTP2_ERR_INVALID_ARGUMENT.rawValue) {
            // Stream already closed: return the connection window only.
            _ = nghttp2_session_consume_connection(session, bytes)
        }
    }

    /// Returns connection window for bytes of streams we no longer track.
    static func consumeConnection(_ session: OpaquePointer, bytes: Int) {
        guard bytes > 0 else { return }
        _ = nghttp2_session_consume_connection(session, bytes)
    }

    /// Queues a PING (keepalive); nghttp2 answers peers' PINGs by itself.
    static func submitPing(_ session: OpaquePointer) {
        _ = nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
    }

    static let framePing = UInt8(NGHTTP2_PING.rawValue)
    static let flagAck = UInt8(NGHTTP2_FLAG_ACK.rawValue)

    /// Sends GOAWAY(NO_ERROR) naming the last stream we processed.
    static func submitGoaway(_ session: OpaquePointer) {
        let last = nghttp2_session_get_last_proc_stream_id(session)
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    /// Sends GOAWAY with an error and makes the session finish.
    static func terminate(_ session: OpaquePointer, errorCode: UInt32) {
        _ = nghttp2_session_terminate_session(session, errorCode)
    }

    /// The peer's SETTINGS_MAX_HEADER_LIST_SIZE (UInt32.max until it announces one).
    static func remoteMaxHeaderListSize(_ session: OpaquePointer) -> Int {
        Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE))
    }

    /// Whether the peer has ended its side of the stream.
    static func remoteClosed(_ session: OpaquePointer, streamID: Int32) -> Bool {
        nghttp2_session_get_stream_remote_close(session, streamID) == 1
    }

}

// MARK: - C callbacks (non-capturing; the owner comes from user_data)

private func owner(_ ud: UnsafeMutableRawPointer?) -> H2Connection? {
    guard let ud else { return nil }
    return Unmanaged<H2Connection>.fromOpaque(ud).takeUnretainedValue()
}

private func nghttp2OnBeginHeaders(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud), let frame else { return 0 }
    guard frame.pointee.hd.type == NGHTTP2Calls.frameHeaders else { return 0 }
    return conn.onBeginHeaders(streamID: frame.pointee.hd.stream_id, category: frame.pointee.headers.cat.rawValue)
}

private func nghttp2OnHeader(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ name: UnsafePointer<UInt8>?, _ namelen: Int,
    _ value: UnsafePointer<UInt8>?, _ valuelen: Int, _ flags: UInt8, _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud), let frame, frame.pointee.hd.type == NGHTTP2Calls.frameHeaders else { return 0 }
    let n = UnsafeBufferPointer(start: name, count: name == nil ? 0 : namelen)
    let v = UnsafeBufferPointer(start: value, count: value == nil ? 0 : valuelen)
    return conn.onHeader(
        streamID: frame.pointee.hd.stream_id, category: frame.pointee.headers.cat.rawValue, name: n, value: v)
}

private func nghttp2OnFrameRecv(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud), let frame else { return 0 }
    let type = frame.pointee.hd.type
    var info = H2FrameInfo(
        type: type, flags: frame.pointee.hd.flags, streamID: frame.pointee.hd.stream_id, category: 0, errorCode: 0,
        lastStreamID: 0)
    if type == NGHTTP2Calls.frameHeaders { info.category = frame.pointee.headers.cat.rawValue }
    if type == NGHTTP2Calls.frameRstStream { info.errorCode = frame.pointee.rst_stream.error_code }
    if type == NGHTTP2Calls.frameGoaway {
        info.errorCode = frame.pointee.goaway.error_code
        info.lastStreamID = frame.pointee.goaway.last_stream_id
    }
    return conn.onFrameRecv(info)
}

private func nghttp2OnDataChunkRecv(
    _ session: OpaquePointer?, _ flags: UInt8, _ streamID: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int,
    _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud) else { return 0 }
    return conn.onDataChunk(streamID: streamID, UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : len))
}

private func nghttp2OnStreamClose(
    _ session: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32, _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud) else { return 0 }
    return conn.onStreamClose(streamID: streamID, errorCode: errorCode)
}

private func nghttp2OnFrameSend(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud), let frame else { return 0 }
    conn.onFrameSend(type: frame.pointee.hd.type, flags: frame.pointee.hd.flags, streamID: frame.pointee.hd.stream_id)
    return 0
}

private func nghttp2OnFrameNotSend(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ errorCode: Int32,
    _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud), let frame else { return 0 }
    conn.onFrameNotSent(type: frame.pointee.hd.type, streamID: frame.pointee.hd.stream_id, errorCode: errorCode)
    return 0
}

private func nghttp2ReadData(
    _ session: OpaquePointer?, _ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>?, _ length: Int,
    _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _ ud: UnsafeMutableRawPointer?
) -> Int {
    guard let conn = owner(ud), let flags else { return Int(NGHTTP2Calls.errTemporalCallbackFailure) }
    var f: UInt32 = 0
    let n = conn.readData(streamID: streamID, maxLength: length, flags: &f)
    flags.pointee |= f
    return n
}

private func nghttp2SendData(
    _ session: OpaquePointer?, _ frame: UnsafeMutablePointer<nghttp2_frame>?, _ framehd: UnsafePointer<UInt8>?,
    _ length: Int, _ source: UnsafeMutablePointer<nghttp2_data_source>?, _ ud: UnsafeMutableRawPointer?
) -> Int32 {
    guard let conn = owner(ud), let frame, let framehd else { return NGHTTP2Calls.errCallbackFailure }
    return conn.sendData(
        streamID: frame.pointee.hd.stream_id, frameHeader: UnsafeRawBufferPointer(start: framehd, count: 9),
        length: length, padding: Int(frame.pointee.data.padlen))
}

private func nghttp2ReadLength(
    _ session: OpaquePointer?, _ frameType: UInt8, _ streamID: Int32, _ sessionWindow: Int32, _ streamWindow: Int32,
    _ maxFrame: UInt32, _ ud: UnsafeMutableRawPointer?
) -> Int {
    max(1, min(Int(maxFrame), Int(min(sessionWindow, streamWindow))))
}
