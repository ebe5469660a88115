#!/usr/bin/env python3
"""A pyarrow FlightServerBase reference server for our Swift Flight client.

Used by Tests/NodeTests/FlightClientInteropTests.swift. Usage:

    reference_server.py [--auth USER:PASS] [--tls CERT KEY]

Listens on 127.0.0.1, port 0, and prints "listening on grpc://127.0.0.1:PORT"
(grpc+tls:// with --tls) as its first stdout line. Stops on SIGTERM/SIGINT.

It follows the ValkeyFlight contract (CONTRACT.md) §2 for a node without a coordinator, as far as
pyarrow lets a server:
  * DoPut by descriptor PATH [QUEUE, ID] or [QUEUE] (an ID is made); one PutResult
    whose app_metadata is JSON {"key", "rows", "bytes", "status"}; a key that exists
    fails (pyarrow cannot send ALREADY_EXISTS; see CODES); the client's per-batch
    app_metadata is kept and shown by the "digest" action.
  * DoGet: ticket = key bytes -> the stored batches, batch boundaries kept.
  * GetFlightInfo / GetSchema: descriptor PATH [QUEUE, ID]; FlightInfo has the
    schema, descriptor, one endpoint {ticket = key, location = this server},
    total_records, total_bytes, ordered = true, app_metadata = {"key": KEY}.
  * ListFlights: criteria = key prefix (empty: all).
  * PollFlightInfo: pyarrow 26's FlightServerBase has no poll_flight_info, so the
    C++ default answers UNIMPLEMENTED.
  * DoExchange: echoes the client's stream with every integer column multiplied by
    10 and each chunk's app_metadata prefixed with b"echo:"; a metadata-only
    message is answered with a metadata-only message; a stream without batches
    ends with the metadata-only message b"no data for path A/B" (or "cmd C"),
    which shows the descriptor arrived.
  * Handshake: every request payload is echoed back reversed; without --auth every
    call is accepted; with --auth, pyarrow's header authentication (a
    ServerMiddleware like pyarrow's own tests: "authorization: Basic" on the
    Handshake -> "authorization: Bearer TOKEN" response header; every other call
    needs that bearer header, else UNAUTHENTICATED).
  * DoAction: see ACTIONS.

Exceptions raised by handlers reach the client as gRPC codes through Arrow C++
(CODES below, checked by the tests).

Tool versions: pyarrow 26.0.1, numpy 2.4, Python 3.11.
"""
import argparse
import base64
import json
import os
import signal
import sys
import threading
import uuid

sys.dont_write_bytecode = True  # keep Tests/Fixtures free of __pycache__

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.flight as fl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ArrowIPC"))
import canonical_dump  # noqa: E402  (Tests/Fixtures/ArrowIPC/canonical_dump.py)

ACTIONS = [
    ("echo", "returns the body as one result"),
    ("results", "body: N; returns N results 'result-0' .. 'result-N-1'"),
    ("digest", "body: key; three results: the stored schema (pyarrow's to_string), the canonical dump of "
               "the stored batches (canonical_dump.py) and the JSON list of the client's app_metadata per message"),
    ("dump-file", "body: path of an Arrow IPC stream or file; two results: its schema and canonical dump"),
    ("sums", "body: key; JSON {rows, batches, sums: {column: sum}} over the integer columns (for big batches)"),
    ("delete", "body: key; forgets the batch (KeyError if unknown)"),
    ("fail", "body: a kind of error (see CODES); raises it"),
    ("whoami", "the bearer token of the call (auth mode only)"),
]

# Python exceptions a handler may raise, by the name the "fail" action takes.
CODES = {
    "not_found": lambda m: KeyError(m),
    "invalid": lambda m: ValueError(m),
    "unimplemented": lambda m: NotImplementedError(m),
    "unauthenticated": lambda m: fl.FlightUnauthenticatedError(m),
    "unauthorized": lambda m: fl.FlightUnauthorizedError(m),
    "unavailable": lambda m: fl.FlightUnavailableError(m),
    "timed_out": lambda m: fl.FlightTimedOutError(m),
    "cancelled": lambda m: fl.FlightCancelledError(m),
    "internal": lambda m: fl.FlightInternalError(m),
    "server_error": lambda m: fl.FlightServerError(m),
}


def key_of(descriptor, allow_queue_only=False):
    """The batch key of a PATH descriptor, or raise ValueError (INVALID_ARGUMENT)."""
    if descriptor.descriptor_type != fl.DescriptorType.PATH:
        raise ValueError("expected a PATH descriptor [QUEUE, ID]")
    path = [p.decode() if isinstance(p, bytes) else p for p in descriptor.path]
    if allow_queue_only and len(path) == 1:
        path = path + [uuid.uuid4().hex]
    if len(path) != 2 or not all(path):
        raise ValueError("descriptor path must be [QUEUE, ID], got %r" % (path,))
    return "/".join(path)


def describe(descriptor):
    if descriptor.descriptor_type == fl.DescriptorType.PATH:
        return "path " + "/".join(p.decode() if isinstance(p, bytes) else p for p in descriptor.path)
    return "cmd " + bytes(descriptor.command).decode("latin-1")


class Stored:
    def __init__(self, schema, batches, app_metadata):
        self.schema = schema
        self.batches = batches
        self.app_metadata = app_metadata
        self.rows = sum(b.num_rows for b in batches)
        self.bytes = sum(b.nbytes for b in batches)


class HeaderAuthMiddlewareFactory(fl.ServerMiddlewareFactory):
    """Basic -> Bearer header authentication, as pyarrow's test_flight.py does it."""

    def __init__(self, username, password):
        super().__init__()
        self.username = username
        self.password = password
        self.token = uuid.uuid4().hex

    def start_call(self, info, headers):
        values = []
        for name, value in headers.items():
            if name.lower() == "authorization":
                values = value
        if not values:
            raise fl.FlightUnauthenticatedError("no authorization header")
        scheme, _, credential = values[0].partition(" ")
        if scheme == "Basic" and info.method == fl.FlightMethod.HANDSHAKE:
            try:
                user, _, password = base64.b64decode(credential).decode().partition(":")
            except Exception:
                raise fl.FlightUnauthenticatedError("malformed Basic credentials")
            if user != self.username or password != self.password:
                raise fl.FlightUnauthenticatedError("invalid username or password")
            return HeaderAuthMiddleware(self.token)
        if scheme == "Bearer" and credential == self.token:
            return HeaderAuthMiddleware(self.token)
        raise fl.FlightUnauthenticatedError("invalid token")


class HeaderAuthMiddleware(fl.ServerMiddleware):
    def __init__(self, token):
        super().__init__()
        self.token = token

    def sending_headers(self):
        return {"authorization": "Bearer " + self.token}


class EchoAuthHandler(fl.ServerAuthHandler):
    """A raw Handshake: each request payload comes back reversed; every call is accepted."""

    def authenticate(self, outgoing, incoming):
        while True:
            try:
                payload = incoming.read()
            except Exception:  # the client finished sending
                return
            if payload is None:
                return
            outgoing.write(bytes(payload)[::-1])

    def is_valid(self, token):
        return b""


class ReferenceServer(fl.FlightServerBase):
    def __init__(self, location, auth=None, tls=None):
        # Arrow C++ answers Handshake UNIMPLEMENTED without an auth handler, so there is always one (like
        # pyarrow's own test of authenticate_basic_token, which pairs a no-op handler with the middleware).
        middleware = {"auth": auth} if auth is not None else {}
        super().__init__(location, auth_handler=EchoAuthHandler(), middleware=middleware,
                         tls_certificates=[tls] if tls else None)
        self.lock = threading.Lock()
        self.store = {}
        self.location = None

    # -- helpers ---------------------------------------------------------

    def stored(self, key):
        with self.lock:
            entry = self.store.get(key)
        if entry is None:
            raise KeyError("no batch %s" % key)
        return entry

    def info(self, key, entry):
        descriptor = fl.FlightDescriptor.for_path(*key.split("/"))
        endpoint = fl.FlightEndpoint(key.encode(), [self.location])
        return fl.FlightInfo(entry.schema, descriptor, [endpoint], entry.rows, entry.bytes,
                             ordered=True, app_metadata=json.dumps({"key": key}).encode())

    # -- RPCs ------------------------------------------------------------

    def list_flights(self, context, criteria):
        prefix = bytes(criteria or b"").decode()
        with self.lock:
            items = sorted(self.store.items())
        for key, entry in items:
            if key.startswith(prefix):
                yield self.info(key, entry)

    def get_flight_info(self, context, descriptor):
        key = key_of(descriptor)
        return self.info(key, self.stored(key))

    def get_schema(self, context, descriptor):
        return fl.SchemaResult(self.stored(key_of(descriptor)).schema)

    def do_put(self, context, descriptor, reader, writer):
        key = key_of(descriptor, allow_queue_only=True)
        with self.lock:
            if key in self.store:
                raise fl.FlightServerError("ALREADY_EXISTS: batch %s exists" % key)
        batches, app_metadata = [], []
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            if chunk.data is not None:
                batches.append(chunk.data)
            app_metadata.append(chunk.app_metadata.to_pybytes().decode("latin-1")
                                if chunk.app_metadata is not None else None)
        entry = Stored(reader.schema, batches, app_metadata)
        with self.lock:
            if key in self.store:
                raise fl.FlightServerError("ALREADY_EXISTS: batch %s exists" % key)
            self.store[key] = entry
        writer.write(pa.py_buffer(json.dumps(
            {"key": key, "rows": entry.rows, "bytes": entry.bytes, "status": "stored"}).encode()))

    def do_get(self, context, ticket):
        entry = self.stored(ticket.ticket.decode())
        # RecordBatchStream, not GeneratorStream: pyarrow 26's GeneratorStream sends no dictionary batches.
        return fl.RecordBatchStream(pa.RecordBatchReader.from_batches(entry.schema, entry.batches))

    def do_exchange(self, context, descriptor, reader, writer):
        started = False
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            if not started and chunk.data is not None:
                writer.begin(chunk.data.schema)
                started = True
            metadata = None
            if chunk.app_metadata is not None:
                metadata = pa.py_buffer(b"echo:" + chunk.app_metadata.to_pybytes())
            if chunk.data is None:
                if metadata is not None:
                    writer.write_metadata(metadata)
                continue
            columns = []
            for column in chunk.data.columns:
                if pa.types.is_integer(column.type):
                    column = pc.multiply(column, pa.scalar(10, column.type))
                columns.append(column)
            batch = pa.RecordBatch.from_arrays(columns, schema=chunk.data.schema)
            if metadata is None:
                writer.write_batch(batch)
            else:
                writer.write_with_metadata(batch, metadata)
        if not started:
            # Nothing but (maybe) metadata came: say which descriptor arrived.
            writer.write_metadata(pa.py_buffer(b"no data for " + describe(descriptor).encode()))

    def list_actions(self, context):
        return ACTIONS

    def do_action(self, context, action):
        body = action.body.to_pybytes() if action.body is not None else b""
        kind = action.type
        if kind == "echo":
            return [body]
        if kind == "results":
            return [("result-%d" % i).encode() for i in range(int(body.decode() or "0"))]
        if kind == "digest":
            entry = self.stored(body.decode())
            batches = {"batches": [{"rows": b.num_rows, "columns": canonical_dump.batch_columns(b, "pa")}
                                   for b in entry.batches]}
            return [entry.schema.to_string(show_schema_metadata=True).encode(),
                    canonical_dump.dumps(batches).encode(),
                    json.dumps(entry.app_metadata).encode()]
        if kind == "dump-file":
            path = body.decode()
            schema, _ = canonical_dump.read_batches(path)
            return [schema.to_string(show_schema_metadata=True).encode(),
                    canonical_dump.dumps(canonical_dump.dump_obj(path)).encode()]
        if kind == "sums":
            entry = self.stored(body.decode())
            sums = {}
            for index, field in enumerate(entry.schema):
                if pa.types.is_integer(field.type):
                    sums[field.name] = sum((pc.sum(b.column(index)).as_py() or 0) for b in entry.batches)
            return [json.dumps({"rows": entry.rows, "batches": len(entry.batches), "sums": sums}).encode()]
        if kind == "delete":
            with self.lock:
                if self.store.pop(body.decode(), None) is None:
                    raise KeyError("no batch %s" % body.decode())
            return [json.dumps({"deleted": body.decode()}).encode()]
        if kind == "fail":
            make = CODES.get(body.decode())
            if make is None:
                raise ValueError("unknown error kind %r" % body.decode())
            raise make("failing as asked: %s" % body.decode())
        if kind == "whoami":
            middleware = context.get_middleware("auth")
            return [middleware.token.encode() if middleware else b""]
        raise NotImplementedError("unknown action %r" % kind)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--auth", metavar="USER:PASS")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    auth = None
    if args.auth:
        user, _, password = args.auth.partition(":")
        auth = HeaderAuthMiddlewareFactory(user, password)
    tls = None
    scheme = "grpc"
    if args.tls:
        with open(args.tls[0], "rb") as f:
            cert = f.read()
        with open(args.tls[1], "rb") as f:
            key = f.read()
        tls = (cert, key)
        scheme = "grpc+tls"
    server = ReferenceServer("%s://127.0.0.1:0" % scheme, auth=auth, tls=tls)
    server.location = fl.Location("%s://127.0.0.1:%d" % (scheme, server.port))
    print("listening on %s://127.0.0.1:%d" % (scheme, server.port), flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve()


if __name__ == "__main__":
    main()
