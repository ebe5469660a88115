#!/usr/bin/env python3
"""pyarrow (the reference Flight client) driving a `valkeyflight flight` server.

Used by Tests/NodeTests/FlightServerInteropTests.swift. Usage:

    pyarrow_client.py SUBCOMMAND URL [ARGS...]

Each subcommand checks what the ValkeyFlight contract (CONTRACT.md) §2 promises. On success it prints
one JSON object (facts the Swift test checks again) as the last stdout line and
exits 0; a failed check prints "FAIL: reason" on stderr and exits 1.

Where pyarrow hides the exact gRPC status code (it maps several codes to one
exception class), the same request is also sent with grpcio directly, with
FlightData and the other Flight.proto messages hand-encoded (field numbers
from Flight.proto: FlightData 1 descriptor, 2 data_header, 3 app_metadata,
1000 data_body; FlightDescriptor 1 type (PATH=1, CMD=2), 2 cmd, 3 path).

Tool versions: pyarrow 26.0.1, grpcio 1.85, numpy 2.4, Python 3.11.
"""
import argparse
import json
import os
import re
import struct
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep Tests/Fixtures free of __pycache__

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.flight as fl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ArrowIPC"))
import compare  # noqa: E402  (Tests/Fixtures/ArrowIPC/compare.py: bit-exact float comparison)

SERVICE = "/arrow.flight.protocol.FlightService/"
ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class Fail(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Fail(message)


# ---------------------------------------------------------------------------
# hand-encoded protobuf and raw gRPC calls
# ---------------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def ld(number, data):
    """A length-delimited field."""
    return varint((number << 3) | 2) + varint(len(data)) + bytes(data)


def descriptor_path(*parts):
    return varint(1 << 3) + varint(1) + b"".join(ld(3, p.encode()) for p in parts)


def descriptor_cmd(cmd):
    return varint(1 << 3) + varint(2) + ld(2, cmd)


def flight_data(descriptor=None, header=b"", body=b"", app_metadata=b""):
    out = b""
    if descriptor is not None:
        out += ld(1, descriptor)
    if header:
        out += ld(2, header)
    if app_metadata:
        out += ld(3, app_metadata)
    if body:
        out += ld(1000, body)
    return out


def decode_fields(data):
    """{field number: [value, ...]}; values are ints (varint, fixed) or bytes (length-delimited)."""
    fields = {}
    i = 0
    data = bytes(data)
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            length, i = read_varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        fields.setdefault(number, []).append(value)
    return fields


def read_varint(data, i):
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def host_port(url):
    return url.split("://", 1)[1]


def raw_channel(url):
    return grpc.insecure_channel(host_port(url), options=[
        ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])


def raw_call(channel, kind, method, request, timeout=30):
    """A raw call; returns (code name, details, [response bytes])."""
    rpc = getattr(channel, kind)(SERVICE + method)
    try:
        if kind == "unary_unary":
            responses = [rpc(request, timeout=timeout)]
        else:
            responses = list(rpc(request, timeout=timeout))
        return "OK", "", responses
    except grpc.RpcError as e:
        return e.code().name, e.details() or "", []


def ipc_messages(path):
    """The (header, body) pairs of an IPC stream file, exactly as pyarrow frames them for Flight."""
    reader = pa.ipc.MessageReader.open_stream(pa.OSFile(path))
    out = []
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            return out
        body = message.body.to_pybytes() if message.body is not None else b""
        out.append((message.metadata.to_pybytes(), body))


def stream_bytes(messages):
    """An IPC stream (encapsulated messages + end-of-stream marker) from (header, body) pairs."""
    out = bytearray()
    for header, body in messages:
        padding = (8 - len(header) % 8) % 8
        out += b"\xff\xff\xff\xff" + struct.pack("<i", len(header) + padding) + header + b"\0" * padding + body
    out += b"\xff\xff\xff\xff\0\0\0\0"
    return bytes(out)


def raw_put(channel, descriptor, messages, timeout=60):
    """DoPut of (header, body) pairs; the descriptor rides on the first message. Returns (code, details, [PutResult])."""
    requests = []
    for index, (header, body) in enumerate(messages):
        requests.append(flight_data(descriptor if index == 0 else None, header, body))
    if not requests:
        requests.append(flight_data(descriptor))
    return raw_call(channel, "stream_stream", "DoPut", iter(requests), timeout)


def raw_get(channel, key, timeout=60):
    """DoGet; returns (code, details, [(header, body)])."""
    code, details, responses = raw_call(channel, "unary_stream", "DoGet", ld(1, key.encode()), timeout)
    messages = []
    for response in responses:
        fields = decode_fields(response)
        messages.append((fields.get(2, [b""])[0], fields.get(1000, [b""])[0]))
    return code, details, messages


# ---------------------------------------------------------------------------
# pyarrow helpers
# ---------------------------------------------------------------------------

def put(client, path, schema, batches, options=None):
    """do_put; returns the PutResult app_metadata as a dict."""
    descriptor = fl.FlightDescriptor.for_path(*path)
    if options is None:
        writer, reader = client.do_put(descriptor, schema)
    else:
        writer, reader = client.do_put(descriptor, schema, options=options)
    for batch in batches:
        writer.write_batch(batch)
    writer.done_writing()
    buffer = reader.read()
    writer.close()
    check(buffer is not None, "DoPut to %s sent no PutResult" % (path,))
    return json.loads(buffer.to_pybytes())


def put_table(client, path, table, options=None):
    return put(client, path, table.schema, table.to_batches(), options)


def error_of(fn):
    """Runs fn; returns None or {"class", "message"} of the exception it raised."""
    try:
        result = fn()
        if hasattr(result, "read_all"):
            result.read_all()
        return None
    except Exception as e:  # noqa: BLE001 - every exception is reported to the test
        return {"class": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "message": str(e)}


def expect_error(fn, classes, what):
    error = error_of(fn)
    check(error is not None, "%s: expected %s, the call succeeded" % (what, classes))
    check(any(c in error["mro"] for c in classes), "%s: expected %s, got %s: %s" % (
        what, classes, error["class"], error["message"]))
    return error


def sample_table(rows=1000, tag="x"):
    values = np.arange(rows, dtype=np.int64)
    return pa.table({
        "id": pa.array(values),
        "value": pa.array(values * 0.25),
        "tag": pa.array(["%s-%d" % (tag, i % 7) for i in range(rows)]),
    }, metadata={b"origin": b"pyarrow_client.py"})


def keys_listed(client, prefix=b""):
    return sorted("/".join(p.decode() for p in info.descriptor.path) for info in client.list_flights(prefix))


# ---------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------

def cmd_rpcs(args):
    """Every RPC pyarrow has, against an empty server."""
    client = fl.connect(args.url)
    facts = {}
    table = sample_table(2500)

    # Handshake without auth: the server answers (pyarrow's auth handler sends a payload, reads the reply).
    class Echo(fl.ClientAuthHandler):
        def __init__(self):
            super().__init__()
            self.reply = None

        def authenticate(self, outgoing, incoming):
            outgoing.write(b"ping")
            self.reply = incoming.read()

        def get_token(self):
            return b""

    echo = Echo()
    client.authenticate(echo)
    facts["handshake_reply"] = echo.reply.decode() if echo.reply is not None else None

    # DoPut with [QUEUE, ID] and with [QUEUE] alone.
    first = put_table(client, ["alpha", "one"], table)
    facts["put_path"] = first
    generated = put_table(client, ["alpha"], table)
    facts["put_queue_only"] = generated
    check(generated["key"].startswith("alpha/"), "server-made key %r is not in queue alpha" % generated["key"])
    made_id = generated["key"][len("alpha/"):]
    check(ID_PATTERN.match(made_id), "server-made id %r breaks the key grammar" % made_id)
    again = put_table(client, ["alpha"], table)
    check(again["key"] != generated["key"], "two [QUEUE] puts got the same key %s" % again["key"])
    put_table(client, ["beta", "two"], table.slice(0, 10))

    # GetFlightInfo.
    info = client.get_flight_info(fl.FlightDescriptor.for_path("alpha", "one"))
    check(info.schema.equals(table.schema, check_metadata=True), "FlightInfo schema %s != %s" % (info.schema, table.schema))
    check(info.descriptor == fl.FlightDescriptor.for_path("alpha", "one"), "FlightInfo descriptor %s" % info.descriptor)
    check(len(info.endpoints) == 1, "FlightInfo has %d endpoints" % len(info.endpoints))
    endpoint = info.endpoints[0]
    facts["info"] = {
        "ticket": endpoint.ticket.ticket.decode(),
        "locations": [loc.uri.decode() for loc in endpoint.locations],
        "total_records": info.total_records,
        "total_bytes": info.total_bytes,
    }

    # DoGet by the endpoint's ticket.
    got = client.do_get(endpoint.ticket).read_all()
    check(got.equals(table, check_metadata=True), "DoGet by the endpoint ticket returned different data")
    facts["get_rows"] = got.num_rows

    # GetSchema.
    schema = client.get_schema(fl.FlightDescriptor.for_path("alpha", "one")).schema
    check(schema.equals(table.schema, check_metadata=True), "GetSchema %s != %s" % (schema, table.schema))

    # PollFlightInfo: pyarrow 26 has no client method, so a raw call.
    channel = raw_channel(args.url)
    code, details, responses = raw_call(channel, "unary_unary", "PollFlightInfo", descriptor_path("alpha", "one"))
    check(code == "OK", "PollFlightInfo: %s %s" % (code, details))
    poll = decode_fields(responses[0])
    check(1 in poll, "PollInfo has no info")
    polled = fl.FlightInfo.deserialize(poll[1][0])
    check(polled.total_records == info.total_records and polled.descriptor == info.descriptor,
          "PollInfo.info differs from GetFlightInfo")
    check(2 not in poll, "a complete query's PollInfo must not carry a descriptor to poll again")
    facts["poll_progress"] = struct.unpack("<d", poll[3][0])[0] if 3 in poll else None

    # ListFlights with and without a prefix.
    facts["list_all"] = keys_listed(client)
    facts["list_alpha"] = keys_listed(client, b"alpha/")
    facts["list_beta"] = keys_listed(client, b"beta")
    facts["list_none"] = keys_listed(client, b"gamma/")
    for listed in client.list_flights(b"alpha/one"):
        check(listed.total_records == table.num_rows and listed.schema.equals(table.schema),
              "ListFlights' FlightInfo for alpha/one is incomplete")

    # ListActions.
    facts["actions"] = {a.type: a.description for a in client.list_actions()}

    # DoAction health, stats, delete.
    facts["health"] = [json.loads(r.body.to_pybytes()) for r in client.do_action(fl.Action("health", b""))]
    facts["stats"] = [json.loads(r.body.to_pybytes()) for r in client.do_action(fl.Action("stats", b""))]
    facts["delete"] = [json.loads(r.body.to_pybytes()) for r in client.do_action(fl.Action("delete", b"alpha/one"))]
    expect_error(lambda: client.do_get(fl.Ticket(b"alpha/one")), ["KeyError"], "DoGet after delete")
    check("alpha/one" not in keys_listed(client), "a deleted batch is still listed")
    expect_error(lambda: list(client.do_action(fl.Action("delete", b"alpha/one"))), ["KeyError"], "second delete")
    expect_error(lambda: list(client.do_action(fl.Action("frobnicate", b""))), ["ArrowInvalid"], "unknown action")
    facts["list_after_delete"] = keys_listed(client)

    # DoExchange needs the coordinator: UNIMPLEMENTED for now.
    def exchange():
        writer, reader = client.do_exchange(fl.FlightDescriptor.for_path("alpha"))
        writer.begin(table.schema)
        writer.write_table(table)
        writer.done_writing()
        reader.read_all()
    facts["exchange_error"] = error_of(exchange)
    code, details, _ = raw_call(channel, "stream_stream", "DoExchange", iter([flight_data(descriptor_path("alpha"))]))
    facts["exchange_code"] = code
    return facts


def cmd_roundtrip(args):
    """Each file: pyarrow reads it, do_put's it, do_get's it back, compares (bit-exact floats, metadata);
    then the same stream's raw messages are put and got back byte for byte."""
    client = fl.connect(args.url)
    channel = raw_channel(args.url)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, path in enumerate(args.files):
            name = os.path.basename(path)
            entry = {"file": name}
            try:
                schema, batches = compare.cd.read_batches(path)
                key = [args.queue, "f%03d" % index]
                result = put(client, key, schema, batches)
                check(result["key"] == "/".join(key), "PutResult key %r" % result["key"])
                check(result["rows"] == sum(b.num_rows for b in batches), "PutResult rows %r" % result["rows"])
                reader = client.do_get(fl.Ticket("/".join(key).encode()))
                got_schema = reader.schema
                got = [chunk.data for chunk in reader]
                copy = os.path.join(scratch, "%03d.arrows" % index)
                with pa.OSFile(copy, "wb") as sink, pa.ipc.new_stream(sink, got_schema) as writer:
                    for batch in got:
                        writer.write_batch(batch)
                reason = compare.compare(path, copy)
                check(reason is None, "pyarrow put/get: %s" % reason)

                # Byte for byte: the file's own messages (deltas and replacements as they are).
                messages = ipc_messages(path)
                raw_key = "%s-raw/f%03d" % (args.queue, index)
                code, details, _ = raw_put(channel, descriptor_path(args.queue + "-raw", "f%03d" % index), messages)
                check(code == "OK", "raw DoPut: %s %s" % (code, details))
                code, details, back = raw_get(channel, raw_key)
                check(code == "OK", "raw DoGet: %s %s" % (code, details))
                check(len(back) == len(messages), "raw DoGet: %d messages, put %d" % (len(back), len(messages)))
                for i, ((h1, b1), (h2, b2)) in enumerate(zip(messages, back)):
                    check(h1 == h2, "message %d: data_header differs (%d vs %d bytes)" % (i, len(h1), len(h2)))
                    check(b1 == b2, "message %d: data_body differs (%d vs %d bytes)" % (i, len(b1), len(b2)))
                entry["messages"] = len(messages)
                entry["ok"] = True
            except Exception as e:  # noqa: BLE001 - reported per file
                entry["ok"] = False
                entry["reason"] = ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")[:500]
            results.append(entry)
    return {"files": results}


def cmd_delta(args):
    """Dictionary deltas survive: the stream is stored and sent back byte for byte, and pyarrow reads it back."""
    client = fl.connect(args.url)
    channel = raw_channel(args.url)
    path = args.file
    facts = {}
    expected = pa.ipc.open_stream(path)
    expected_table = expected.read_all()
    facts["file_deltas"] = expected.stats.num_dictionary_deltas
    check(facts["file_deltas"] > 0, "%s has no dictionary deltas" % path)

    # 1. The file's messages as they are, through raw gRPC; read back by pyarrow's Flight client.
    messages = ipc_messages(path)
    code, details, results = raw_put(channel, descriptor_path("delta", "raw"), messages)
    check(code == "OK", "raw DoPut: %s %s" % (code, details))
    facts["raw_put"] = json.loads(decode_fields(results[0])[1][0])
    code, details, back = raw_get(channel, "delta/raw")
    check(back == messages, "the stored stream differs from what was put")
    reread = pa.ipc.open_stream(stream_bytes(back))
    check(reread.read_all().equals(expected_table, check_metadata=True), "raw get re-read differs")
    facts["raw_get_deltas"] = reread.stats.num_dictionary_deltas
    got = client.do_get(fl.Ticket(b"delta/raw")).read_all()
    check(got.equals(expected_table, check_metadata=True), "pyarrow DoGet of the delta stream differs")

    # 2. pyarrow's own writer emitting deltas (IpcWriteOptions.emit_dictionary_deltas).
    options = fl.FlightCallOptions(write_options=pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True))
    schema, batches = compare.cd.read_batches(path)
    put(client, ["delta", "pyarrow"], schema, batches, options)
    code, details, back = raw_get(channel, "delta/pyarrow")
    check(code == "OK", "raw DoGet: %s %s" % (code, details))
    reread = pa.ipc.open_stream(stream_bytes(back))
    check(reread.read_all().equals(expected_table, check_metadata=True), "pyarrow-written delta stream differs")
    facts["pyarrow_put_deltas"] = reread.stats.num_dictionary_deltas
    got = client.do_get(fl.Ticket(b"delta/pyarrow")).read_all()
    check(got.equals(expected_table, check_metadata=True), "pyarrow DoGet of pyarrow's delta stream differs")
    return facts


def big_batch(index, rows):
    ids = np.arange(index * rows, (index + 1) * rows, dtype=np.int64)
    return ids, ids * 0.5


def cmd_big(args):
    """A table of args.batches × args.rows rows (int64 + float64) put and got back, checked batch by batch
    against regenerated values (no second copy held) and by column checksums."""
    client = fl.connect(args.url)
    rows, count = args.rows, args.batches
    schema = pa.schema([("id", pa.int64()), ("half", pa.float64())])
    options = fl.FlightCallOptions(timeout=args.timeout)
    put_sum_id = put_sum_half = 0

    started = time.monotonic()
    writer, reader = client.do_put(fl.FlightDescriptor.for_path("big", "table"), schema, options=options)
    for index in range(count):
        ids, half = big_batch(index, rows)
        put_sum_id += int(ids.sum())
        put_sum_half += int(half.view(np.uint64).sum(dtype=np.uint64))
        writer.write_batch(pa.record_batch([ids, half], schema=schema))
    writer.done_writing()
    result = json.loads(reader.read().to_pybytes())
    writer.close()
    put_seconds = time.monotonic() - started

    started = time.monotonic()
    stream = client.do_get(fl.Ticket(b"big/table"), options=options)
    check(stream.schema.equals(schema), "DoGet schema %s" % stream.schema)
    got_rows = got_batches = 0
    get_sum_id = get_sum_half = 0
    for chunk in stream:
        batch = chunk.data
        ids = batch.column(0).to_numpy()
        half = batch.column(1).to_numpy()
        expected_ids, expected_half = big_batch(got_batches, rows)
        check(batch.num_rows == rows, "batch %d has %d rows" % (got_batches, batch.num_rows))
        check(np.array_equal(ids, expected_ids), "batch %d: id column differs" % got_batches)
        check(np.array_equal(half.view(np.uint64), expected_half.view(np.uint64)), "batch %d: half column differs" % got_batches)
        get_sum_id += int(ids.sum())
        get_sum_half += int(half.view(np.uint64).sum(dtype=np.uint64))
        got_rows += batch.num_rows
        got_batches += 1
    get_seconds = time.monotonic() - started
    check(got_batches == count, "got %d batches, put %d" % (got_batches, count))
    check(get_sum_id == put_sum_id and get_sum_half == put_sum_half, "checksums differ")
    body = rows * count * 16
    return {"put": result, "rows": got_rows, "batches": got_batches, "body_bytes": body,
            "sum_id": get_sum_id, "sum_half_bits": str(get_sum_half % 2**64),
            "put_seconds": round(put_seconds, 3), "get_seconds": round(get_seconds, 3),
            "put_mb_s": round(body / put_seconds / 1e6, 1), "get_mb_s": round(body / get_seconds / 1e6, 1)}


def cmd_concurrent(args):
    """args.clients threads, each with its own FlightClient, put and get their own batch at the same time."""
    barrier = threading.Barrier(args.clients)
    outcomes = [None] * args.clients

    def run(n):
        try:
            client = fl.connect(args.url)
            rows = 20000 + n * 1000
            values = np.arange(rows, dtype=np.int64) + n * 1_000_000
            table = pa.table({"client": pa.array(np.full(rows, n, dtype=np.int32)), "value": values,
                              "label": pa.array(["client-%02d" % n] * rows)})
            barrier.wait(timeout=30)
            result = put(fl.connect(args.url), ["conc", "c%02d" % n], table.schema, table.to_batches(max_chunksize=5000))
            check(result["key"] == "conc/c%02d" % n and result["rows"] == rows, "client %d PutResult %s" % (n, result))
            got = client.do_get(fl.Ticket(("conc/c%02d" % n).encode())).read_all()
            check(got.equals(table), "client %d got different data back" % n)
            outcomes[n] = {"ok": True, "rows": rows}
        except Exception as e:  # noqa: BLE001 - reported per client
            outcomes[n] = {"ok": False, "reason": "%s: %s" % (type(e).__name__, e)}

    threads = [threading.Thread(target=run, args=(n,)) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"clients": outcomes, "listed": keys_listed(fl.connect(args.url), b"conc/")}


def cmd_tls(args):
    """grpc+tls with the server's self-signed certificate as the root."""
    with open(args.root_certs, "rb") as f:
        roots = f.read()
    client = fl.connect(args.url, tls_root_certs=roots)
    table = sample_table(3000)
    result = put_table(client, ["secure", "one"], table)
    info = client.get_flight_info(fl.FlightDescriptor.for_path("secure", "one"))
    got = client.do_get(info.endpoints[0].ticket).read_all()
    check(got.equals(table, check_metadata=True), "DoGet over TLS returned different data")
    # A client that does not trust the certificate cannot connect.
    untrusted = error_of(lambda: fl.connect(args.url).list_actions())
    # Plaintext against the TLS port fails.
    plain = error_of(lambda: fl.connect("grpc://" + host_port(args.url)).list_actions())
    return {"put": result, "location": info.endpoints[0].locations[0].uri.decode(),
            "untrusted_error": untrusted, "plaintext_error": plain}


def cmd_auth(args):
    client = fl.connect(args.url)
    facts = {}
    facts["wrong_password"] = error_of(lambda: client.authenticate_basic_token(args.user.encode(), b"not-" + args.password.encode()))
    facts["wrong_user"] = error_of(lambda: client.authenticate_basic_token(b"mallory", args.password.encode()))
    pair = client.authenticate_basic_token(args.user.encode(), args.password.encode())
    facts["pair_name"] = pair[0].decode()
    facts["pair_value_prefix"] = pair[1][:7].decode()
    check(len(pair[1]) > len(b"Bearer "), "empty bearer token")
    options = fl.FlightCallOptions(headers=[pair])
    table = sample_table(100)
    facts["put"] = put_table(client, ["auth", "one"], table, options)
    got = client.do_get(fl.Ticket(b"auth/one"), options=options).read_all()
    check(got.equals(table, check_metadata=True), "authenticated DoGet returned different data")
    facts["list_with_token"] = sorted("/".join(p.decode() for p in f.descriptor.path) for f in client.list_flights(options=options))
    facts["actions_with_token"] = sorted(a.type for a in client.list_actions(options=options))

    fresh = fl.connect(args.url)  # never authenticated
    bogus = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer 0123456789abcdef")])
    calls = {
        "list_flights": lambda o: list(fresh.list_flights(options=o)),
        "get_flight_info": lambda o: fresh.get_flight_info(fl.FlightDescriptor.for_path("auth", "one"), options=o),
        "get_schema": lambda o: fresh.get_schema(fl.FlightDescriptor.for_path("auth", "one"), options=o),
        "do_get": lambda o: fresh.do_get(fl.Ticket(b"auth/one"), options=o).read_all(),
        "do_put": lambda o: put_table(fresh, ["auth", "two"], table, o),
        "do_action": lambda o: list(fresh.do_action(fl.Action("health", b""), options=o)),
        "list_actions": lambda o: fresh.list_actions(options=o),
    }
    facts["without_token"] = {name: error_of(lambda call=call: call(None)) for name, call in calls.items()}
    facts["bogus_token"] = {name: error_of(lambda call=call: call(bogus)) for name, call in calls.items()}
    facts["list_after"] = sorted("/".join(p.decode() for p in f.descriptor.path) for f in client.list_flights(options=options))

    # The exact status of every RPC without a token (pyarrow's get_schema reports UNAUTHENTICATED as OSError).
    channel = raw_channel(args.url)
    raw = {
        "ListFlights": ("unary_stream", b""),
        "GetFlightInfo": ("unary_unary", descriptor_path("auth", "one")),
        "PollFlightInfo": ("unary_unary", descriptor_path("auth", "one")),
        "GetSchema": ("unary_unary", descriptor_path("auth", "one")),
        "DoGet": ("unary_stream", ld(1, b"auth/one")),
        "DoPut": ("stream_stream", iter([flight_data(descriptor_path("auth", "raw"), ipc_schema_header(table.schema))])),
        "DoExchange": ("stream_stream", iter([flight_data(descriptor_path("auth"))])),
        "DoAction": ("unary_stream", ld(1, b"health")),
        "ListActions": ("unary_stream", b""),
    }
    facts["raw_without_token"] = {method: raw_call(channel, kind, method, request)[0] for method, (kind, request) in raw.items()}
    return facts


def cmd_bad(args):
    """Unknown tickets, bad descriptors, duplicate keys: status codes both as pyarrow sees them and raw."""
    client = fl.connect(args.url)
    channel = raw_channel(args.url)
    table = sample_table(10)
    facts = {"pyarrow": {}, "raw": {}}
    put_table(client, ["bad", "exists"], table)
    schema_header = ipc_schema_header(table.schema)

    cases = {
        "get_unknown_ticket": lambda: client.do_get(fl.Ticket(b"bad/missing")).read_all(),
        "get_garbage_ticket": lambda: client.do_get(fl.Ticket(b"\xff\x00 not a key")).read_all(),
        "info_unknown": lambda: client.get_flight_info(fl.FlightDescriptor.for_path("bad", "missing")),
        "schema_unknown": lambda: client.get_schema(fl.FlightDescriptor.for_path("bad", "missing")),
        "info_cmd": lambda: client.get_flight_info(fl.FlightDescriptor.for_command(b"SELECT 1")),
        "schema_cmd": lambda: client.get_schema(fl.FlightDescriptor.for_command(b"SELECT 1")),
        "info_bad_queue": lambda: client.get_flight_info(fl.FlightDescriptor.for_path("bad/queue", "x")),
        "info_one_element": lambda: client.get_flight_info(fl.FlightDescriptor.for_path("bad")),
        "put_cmd": lambda: put_cmd(client, table),
        "put_bad_queue": lambda: put_table(client, ["no spaces", "x"], table),
        "put_bad_id": lambda: put_table(client, ["bad", "x" * 129], table),
        "put_too_long_path": lambda: put_table(client, ["bad", "a", "b", "c"], table),
        "put_existing": lambda: put_table(client, ["bad", "exists"], table),
        "delete_unknown": lambda: list(client.do_action(fl.Action("delete", b"bad/missing"))),
    }
    for name, fn in cases.items():
        facts["pyarrow"][name] = error_of(fn)

    raw = {
        "get_unknown_ticket": ("unary_stream", "DoGet", ld(1, b"bad/missing")),
        "info_unknown": ("unary_unary", "GetFlightInfo", descriptor_path("bad", "missing")),
        "info_cmd": ("unary_unary", "GetFlightInfo", descriptor_cmd(b"SELECT 1")),
        "schema_cmd": ("unary_unary", "GetSchema", descriptor_cmd(b"SELECT 1")),
        "info_bad_queue": ("unary_unary", "GetFlightInfo", descriptor_path("bad/queue", "x")),
        "put_cmd": ("stream_stream", "DoPut", iter([flight_data(descriptor_cmd(b"x"), schema_header)])),
        "put_no_descriptor": ("stream_stream", "DoPut", iter([flight_data(None, schema_header)])),
        "put_bad_queue": ("stream_stream", "DoPut", iter([flight_data(descriptor_path("no spaces", "x"), schema_header)])),
        "put_existing": ("stream_stream", "DoPut", iter([flight_data(descriptor_path("bad", "exists"), schema_header)])),
        "put_empty_stream": ("stream_stream", "DoPut", iter([])),
    }
    for name, (kind, method, request) in raw.items():
        code, details, _ = raw_call(channel, kind, method, request)
        facts["raw"][name] = {"code": code, "details": details}
    facts["listed"] = keys_listed(client)
    got = client.do_get(fl.Ticket(b"bad/exists")).read_all()
    check(got.equals(table, check_metadata=True), "a rejected second put changed the stored batch")
    return facts


def put_cmd(client, table):
    writer, reader = client.do_put(fl.FlightDescriptor.for_command(b"INSERT"), table.schema)
    writer.write_table(table)
    writer.done_writing()
    reader.read()
    writer.close()


def ipc_schema_header(schema):
    """The flatbuffer header of the schema message pyarrow writes for `schema`."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema):
        pass
    reader = pa.ipc.MessageReader.open_stream(sink.getvalue())
    return reader.read_next_message().metadata.to_pybytes()


def batch_messages(table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    reader = pa.ipc.MessageReader.open_stream(sink.getvalue())
    out = []
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            return out
        out.append((message.metadata.to_pybytes(), message.body.to_pybytes() if message.body is not None else b""))


def cmd_malformed(args):
    """DoPut streams with broken IPC: INVALID_ARGUMENT, and nothing stored under the key afterwards."""
    client = fl.connect(args.url)
    channel = raw_channel(args.url)
    table = sample_table(500)
    messages = batch_messages(table)  # [schema, record batch]
    (schema_header, _), (batch_header, batch_body) = messages[0], messages[1]
    # schema, dictionary, record batch, delta, ... (the first dictionary batch is messages[1])
    dictionary = ipc_messages(os.path.join(HERE, "..", "ArrowIPC", "generated", "dictionary_delta.arrows"))
    flipped = bytearray(batch_header)
    flipped[len(flipped) // 2] ^= 0xFF
    variants = {
        "garbage_schema_header": [(b"\x01\x02\x03 this is not a flatbuffer \xff\xff\xff\xff", b"")],
        "garbage_batch_header": [(schema_header, b""), (b"\x10\x00\x00\x00garbage garbage garbage!", b"")],
        "truncated_schema_header": [(schema_header[: len(schema_header) // 2], b"")],
        "truncated_batch_header": [(schema_header, b""), (batch_header[:12], batch_body)],
        "truncated_body": [(schema_header, b""), (batch_header, batch_body[: len(batch_body) // 2])],
        "batch_before_schema": [(batch_header, batch_body)],
        "flipped_batch_header": [(schema_header, b""), (bytes(flipped), batch_body)],
        "body_without_header_after_batch": [(schema_header, b""), (batch_header, batch_body), (batch_header[:4], b"")],
        "second_schema": [(schema_header, b""), (batch_header, batch_body), (schema_header, b"")],
        "descriptor_only": [],
        "dictionary_never_sent": [dictionary[0]] + dictionary[2:],
        "dictionary_id_not_in_schema": [(schema_header, b""), dictionary[1]],
    }
    facts = {}
    for index, (name, parts) in enumerate(variants.items()):
        key = "malformed/v%d" % index
        code, details, _ = raw_put(channel, descriptor_path("malformed", "v%d" % index), parts)
        listed = key in keys_listed(client, b"malformed/")
        get_code, _, _ = raw_get(channel, key)
        # The key is free again: a good put succeeds.
        retry = error_of(lambda: put_table(client, ["malformed", "v%d" % index], table))
        facts[name] = {"code": code, "details": details, "listed_after": listed, "get_after": get_code,
                       "good_put_after": retry}
    stats = json.loads(list(client.do_action(fl.Action("stats", b"")))[0].body.to_pybytes())
    facts["stats"] = stats
    return facts


def cmd_cancel(args):
    """A DoPut the client cancels half-way: invisible while it runs, nothing left afterwards, key free again."""
    client = fl.connect(args.url)
    channel = raw_channel(args.url)
    table = sample_table(500)
    (schema_header, _), (batch_header, batch_body) = batch_messages(table)
    sent = threading.Event()
    release = threading.Event()

    def requests():
        yield flight_data(descriptor_path("cancel", "one"), schema_header)
        for _ in range(20):
            yield flight_data(None, batch_header, batch_body)
        sent.set()
        release.wait(30)

    def stats():
        return json.loads(list(client.do_action(fl.Action("stats", b"")))[0].body.to_pybytes())

    call = channel.stream_stream(SERVICE + "DoPut")(requests(), timeout=60)
    check(sent.wait(10), "the request stream was not consumed")
    deadline = time.monotonic() + 5
    while stats()["reserved_bytes"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    facts = {"during": {"reserved_bytes": stats()["reserved_bytes"], "listed": keys_listed(client, b"cancel/"),
                        "get": raw_get(channel, "cancel/one")[0]}}
    call.cancel()
    release.set()
    deadline = time.monotonic() + 5
    while stats()["reserved_bytes"] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    facts["after"] = {"stats": stats(), "listed": keys_listed(client, b"cancel/"), "get": raw_get(channel, "cancel/one")[0]}
    facts["put_after"] = error_of(lambda: put_table(client, ["cancel", "one"], table))
    facts["get_after_put"] = client.do_get(fl.Ticket(b"cancel/one")).read_all().num_rows
    return facts


def cmd_memory(args):
    """With a small --max-memory: a put beyond it fails RESOURCE_EXHAUSTED and leaves nothing behind."""
    client = fl.connect(args.url)
    channel = raw_channel(args.url)
    rows = args.mib * 1024 * 1024 // 16
    table = pa.table({"a": np.arange(rows, dtype=np.int64), "b": np.arange(rows, dtype=np.float64)})
    facts = {}
    facts["pyarrow_error"] = error_of(lambda: put_table(client, ["mem", "big"], table))
    code, details, _ = raw_put(channel, descriptor_path("mem", "big2"), batch_messages(table))
    facts["raw"] = {"code": code, "details": details}
    facts["listed"] = keys_listed(client)
    facts["get_after"] = raw_get(channel, "mem/big")[0]
    facts["stats"] = json.loads(list(client.do_action(fl.Action("stats", b"")))[0].body.to_pybytes())
    small = table.slice(0, 1000)
    facts["small_put"] = put_table(client, ["mem", "small"], small)
    check(client.do_get(fl.Ticket(b"mem/small")).read_all().equals(small), "small batch differs")
    list(client.do_action(fl.Action("delete", b"mem/small")))
    facts["stats_after_delete"] = json.loads(list(client.do_action(fl.Action("stats", b"")))[0].body.to_pybytes())
    return facts


def cmd_ttl(args):
    client = fl.connect(args.url)
    table = sample_table(100)
    put_table(client, ["ttl", "one"], table)
    started = time.monotonic()
    check(client.do_get(fl.Ticket(b"ttl/one")).read_all().equals(table, check_metadata=True), "fresh batch differs")
    facts = {"listed_before": keys_listed(client)}
    time.sleep(max(0.0, args.wait / 3 - (time.monotonic() - started)))
    facts["get_early"] = error_of(lambda: client.do_get(fl.Ticket(b"ttl/one")).read_all())
    time.sleep(max(0.0, args.wait - (time.monotonic() - started)))
    facts["get_after"] = error_of(lambda: client.do_get(fl.Ticket(b"ttl/one")).read_all())
    facts["info_after"] = error_of(lambda: client.get_flight_info(fl.FlightDescriptor.for_path("ttl", "one")))
    facts["listed_after"] = keys_listed(client)
    facts["stats_after"] = json.loads(list(client.do_action(fl.Action("stats", b"")))[0].body.to_pybytes())
    return facts


def cmd_inflight(args):
    """For the shutdown tests. Connects and makes a call (with --mib N: puts an N MiB batch and starts a DoGet of
    it, reading only the first batch), prints "ready", then waits for a line on stdin. Afterwards it reads
    the rest of the DoGet stream (checking every value) and tries one more call. gRPC's BDP probe is off, so its
    window stays at 64 KiB: with the probe, a quiet machine grew it enough to take the whole DoGet before the
    signal, and a server with nothing in flight rightly exits at once."""
    client = fl.connect(args.url, generic_options=[("grpc.http2.bdp_probe", 0)])
    facts = {}
    rows = 65536
    count = args.mib * 1024 * 1024 // (rows * 16)
    if count:
        schema = pa.schema([("id", pa.int64()), ("half", pa.float64())])
        batches = (pa.record_batch(list(big_batch(i, rows)), schema=schema) for i in range(count))
        facts["put"] = put(client, ["inflight", "data"], schema, batches)
        reader = client.do_get(fl.Ticket(b"inflight/data"))
        reader.read_chunk()
    else:
        client.list_actions()
    print("ready", flush=True)
    facts["go"] = sys.stdin.readline().strip()
    if count:
        def rest():
            got = 1
            for chunk in reader:
                ids, _ = big_batch(got, rows)
                check(np.array_equal(chunk.data.column(0).to_numpy(), ids), "batch %d differs" % got)
                got += 1
            return got
        try:
            facts["batches"] = rest()
            facts["stream_error"] = None
        except Exception as e:  # noqa: BLE001 - reported to the test
            facts["stream_error"] = "%s: %s" % (type(e).__name__, e)
        facts["expected_batches"] = count
    facts["call_after"] = error_of(lambda: fl.connect(args.url).list_actions())
    return facts


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ["rpcs", "big", "concurrent", "tls", "auth", "bad", "malformed", "memory", "ttl", "inflight", "delta", "cancel", "roundtrip"]:
        p = sub.add_parser(name)
        p.add_argument("url")
        if name == "roundtrip":
            p.add_argument("--queue", default="rt")
            p.add_argument("files", nargs="+")
        if name == "delta":
            p.add_argument("file")
        if name == "big":
            p.add_argument("--rows", type=int, default=65536)
            p.add_argument("--batches", type=int, default=1024)
            p.add_argument("--timeout", type=float, default=120)
        if name == "concurrent":
            p.add_argument("--clients", type=int, default=16)
        if name == "tls":
            p.add_argument("--root-certs", required=True)
        if name == "auth":
            p.add_argument("--user", required=True)
            p.add_argument("--password", required=True)
        if name == "memory":
            p.add_argument("--mib", type=int, default=4)
        if name == "ttl":
            p.add_argument("--wait", type=float, default=3.0)
        if name == "inflight":
            p.add_argument("--mib", type=int, default=0)
    args = parser.parse_args()
    try:
        facts = globals()["cmd_" + args.command](args)
    except Fail as e:
        sys.stderr.write("FAIL: %s\n" % e)
        return 1
    print(json.dumps(facts, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
