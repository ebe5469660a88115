#!/usr/bin/env python3
"""Writes the FlightProto wire fixtures: every message of Arrow's Flight.proto serialized by the reference
protobuf implementation (Python `protobuf`, upb backend).

Usage (from the package root):

    .venv/bin/python Tests/Fixtures/FlightProto/generate.py /path/to/Flight.proto [--arrow-commit SHA]

Flight.proto is compiled at generation time with grpcio-tools into a temporary directory; neither the .proto
nor the generated `_pb2` module is kept. Output (next to this script): `<case>.bin`, `manifest.txt`,
`VERSIONS.txt`. Every case is built from fixed values, so a given protobuf version writes identical bytes.
"""

import argparse
import hashlib
import importlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def pattern(n, mul, add):
    """Deterministic bytes: byte i = (i * mul + add) mod 256. The Swift tests rebuild them the same way."""
    return bytes((i * mul + add) & 0xFF for i in range(n))


# bytes value -> description, so the manifest can say `pattern(n,mul,add)` instead of dumping the bytes.
PATTERNS = {}


def pat(n, mul, add):
    value = pattern(n, mul, add)
    PATTERNS[value] = f"pattern({n},{mul},{add})"
    return value


def compile_proto(proto_path, workdir):
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    proto_dir = os.path.dirname(os.path.abspath(proto_path))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={workdir}",
         os.path.basename(proto_path)],
        check=True,
    )
    sys.path.insert(0, workdir)
    module = os.path.splitext(os.path.basename(proto_path))[0] + "_pb2"
    return importlib.import_module(module)


# ---------------------------------------------------------------------------------------------------------
# Manifest formatting: one line of field values per case, maps in wire order.

def fmt_scalar(field, value):
    from google.protobuf.descriptor import FieldDescriptor as FD

    if field.type == FD.TYPE_BYTES:
        if value in PATTERNS:
            return PATTERNS[value]
        return "x'" + value.hex() + "'"
    if field.type == FD.TYPE_STRING:
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if field.type == FD.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return f"{enum_value.name}({value})" if enum_value else f"<unknown>({value})"
    if field.type == FD.TYPE_BOOL:
        return "true" if value else "false"
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return repr(value)
    return str(value)


def fmt_message(msg, wire_order_maps=None):
    from google.protobuf.descriptor import FieldDescriptor as FD

    parts = []
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            order = (wire_order_maps or {}).get(field.name, list(value.keys()))
            value_field = field.message_type.fields_by_name["value"]
            entries = []
            for key in order:
                v = value[key]
                shown = fmt_message(v) if value_field.message_type is not None else fmt_scalar(value_field, v)
                entries.append(f'"{key}": {shown}')
            parts.append(f"{field.name}: {{{', '.join(entries)}}}")
        elif field.is_repeated:
            if field.message_type is not None:
                items = [fmt_message(v) for v in value]
            else:
                items = [fmt_scalar(field, v) for v in value]
            parts.append(f"{field.name}: [{', '.join(items)}]")
        elif field.message_type is not None:
            parts.append(f"{field.name}: {fmt_message(value)}")
        else:
            parts.append(f"{field.name}: {fmt_scalar(field, value)}")
    return "{" + ", ".join(parts) + "}"


# ---------------------------------------------------------------------------------------------------------
# An independent top-level wire walker (not the codec under test): the boundaries of every top-level field,
# used by the Swift truncation tests to know exactly which cuts must decode and which error each cut raises.

def read_varint(data, pos):
    result, shift = 0, 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def top_level_fields(data):
    """[(number, wire_type, start, value_start, payload_start, end)] for each top-level field."""
    fields, pos = [], 0
    while pos < len(data):
        start = pos
        tag, pos = read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        value_start = pos
        payload_start = pos
        if wire_type == 0:
            _, pos = read_varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, payload_start = read_varint(data, pos)
            pos = payload_start + length
        else:
            raise ValueError(f"unexpected wire type {wire_type} in a fixture")
        fields.append((number, wire_type, start, value_start, payload_start, pos))
    assert pos == len(data)
    return fields


# ---------------------------------------------------------------------------------------------------------

def build_cases(F):
    from google.protobuf.timestamp_pb2 import Timestamp

    cases = []  # (name, message, bytes to write instead of serialize(message) or None)

    def add(name, msg, concat=None):
        cases.append((name, msg, concat))

    def endpoint1():
        return F.FlightEndpoint(
            ticket=F.Ticket(ticket=b"tkt-1"),
            location=[F.Location(uri="grpc+tcp://node-a:8815"), F.Location(uri="grpc+tls://node-b.example:443")],
            expiration_time=Timestamp(seconds=1767225600, nanos=123456789),
            app_metadata=b"ep-meta",
        )

    def endpoint2():
        return F.FlightEndpoint(
            ticket=F.Ticket(ticket=pat(40, 3, 1)),
            location=[F.Location(uri="arrow-flight-reuse-connection://?")],
        )

    # --- every message type ---
    add("handshake_request", F.HandshakeRequest(protocol_version=7, payload=b"\x00\x01hello\xff"))
    add("handshake_response", F.HandshakeResponse(protocol_version=2**64 - 1, payload=b"token-123"))
    add("basic_auth", F.BasicAuth(username="alice", password="p\u00e4$$w\u00f6rd"))
    add("empty", F.Empty())
    add("action_type", F.ActionType(type="CancelFlightInfo", description="Explicitly cancel a running FlightInfo."))
    add("criteria", F.Criteria(expression=b"\x00\x01\x02 where x > 1"))
    add("action", F.Action(type="RenewFlightEndpoint", body=pat(40, 7, 3)))
    add("result", F.Result(body=b"result body\x00\xff"))
    add("schema_result", F.SchemaResult(schema=pat(136, 5, 11)))
    add("descriptor_path", F.FlightDescriptor(
        type=F.FlightDescriptor.PATH,
        path=["datasets", "2026", "donn\u00e9es", "\u65e5\u672c\u8a9e", "\U0001F680 rocket", ""]))
    add("descriptor_cmd", F.FlightDescriptor(type=F.FlightDescriptor.CMD, cmd=b"SELECT * FROM t WHERE id = 42"))
    add("ticket", F.Ticket(ticket=b"ticket-\x00\x01\x02"))
    add("location", F.Location(uri="grpc+tls://flight.example.com:8815"))
    add("flight_endpoint", endpoint1())
    add("flight_info_full", F.FlightInfo(
        schema=pat(200, 13, 255),
        flight_descriptor=F.FlightDescriptor(type=F.FlightDescriptor.PATH, path=["warehouse", "orders"]),
        endpoint=[endpoint1(), endpoint2()],
        total_records=1234567890123,
        total_bytes=-1,
        ordered=True,
        app_metadata=b"info-meta",
    ))
    add("poll_info", F.PollInfo(
        info=F.FlightInfo(
            flight_descriptor=F.FlightDescriptor(type=F.FlightDescriptor.CMD, cmd=b"q1"),
            endpoint=[endpoint2()], total_records=10, total_bytes=800),
        flight_descriptor=F.FlightDescriptor(type=F.FlightDescriptor.CMD, cmd=b"poll-q1"),
        progress=0.5,
        expiration_time=Timestamp(seconds=1767225600),
    ))
    add("cancel_flight_info_request", F.CancelFlightInfoRequest(info=F.FlightInfo(
        flight_descriptor=F.FlightDescriptor(type=F.FlightDescriptor.PATH, path=["x"]), endpoint=[endpoint1()])))
    add("cancel_flight_info_result", F.CancelFlightInfoResult(status=F.CANCEL_STATUS_CANCELLING))
    add("renew_flight_endpoint_request", F.RenewFlightEndpointRequest(endpoint=endpoint1()))
    add("flight_data_full", F.FlightData(
        flight_descriptor=F.FlightDescriptor(type=F.FlightDescriptor.PATH, path=["upload", "t1"]),
        data_header=pat(104, 17, 9),
        app_metadata=b"batch-0",
        data_body=pat(300, 7, 1),
    ))
    add("flight_data_app_metadata_only", F.FlightData(app_metadata=b"\x01\x02\x03 progress"))
    add("put_result", F.PutResult(app_metadata=b"ack:42"))

    def options(cls, entries, name="session_options"):
        msg = cls()
        for key, kind, value in entries:
            v = getattr(msg, name)[key]
            if kind == "string":
                v.string_value = value
            elif kind == "bool":
                v.bool_value = value
            elif kind == "int64":
                v.int64_value = value
            elif kind == "double":
                v.double_value = value
            elif kind == "list":
                v.string_list_value.SetInParent()
                v.string_list_value.values.extend(value)
            elif kind == "unset":
                pass
        return msg

    S = F.SetSessionOptionsRequest
    add("session_string", options(S, [("catalog", "string", "main")]))
    add("session_string_empty", options(S, [("tag", "string", "")]))
    add("session_bool_true", options(S, [("use_cache", "bool", True)]))
    add("session_bool_false", options(S, [("strict", "bool", False)]))
    add("session_int64", options(S, [("batch_size", "int64", 1048576)]))
    add("session_int64_negative", options(S, [("offset", "int64", -42)]))
    add("session_int64_min", options(S, [("floor", "int64", -2**63)]))
    add("session_double", options(S, [("ratio", "double", 3.141592653589793)]))
    add("session_double_negative_zero", options(S, [("nz", "double", -0.0)]))
    add("session_string_list", options(S, [("schemas", "list", ["public", "donn\u00e9es", ""])]))
    add("session_string_list_empty", options(S, [("none", "list", [])]))
    add("session_unset_value", options(S, [("unset", "unset", None)]))
    add("session_empty_key", options(S, [("", "string", "x")]))
    add("session_multi", options(S, [
        ("catalog", "string", "main"), ("use_cache", "bool", True), ("offset", "int64", -42),
        ("ratio", "double", 0.25), ("schemas", "list", ["a", "b"])]))
    add("get_session_options_result", options(F.GetSessionOptionsResult, [
        ("timeout_ms", "int64", 30000), ("catalog", "string", "main"), ("flags", "list", ["x", "y", "z"])]))

    R = F.SetSessionOptionsResult
    single = R()
    single.errors["bad_name"].value = R.INVALID_NAME
    add("set_session_options_result", single)
    unspecified = R()
    unspecified.errors["x"].SetInParent()
    add("set_session_options_result_unspecified", unspecified)
    multi = R()
    multi.errors["alpha"].value = R.INVALID_VALUE
    multi.errors["beta"].value = R.ERROR
    multi.errors["gamma"].value = R.INVALID_NAME
    add("set_session_options_result_multi", multi)

    add("close_session_result", F.CloseSessionResult(status=F.CloseSessionResult.NOT_CLOSEABLE))
    add("get_session_options_request", F.GetSessionOptionsRequest())
    add("close_session_request", F.CloseSessionRequest())

    # --- edge cases ---
    add("default_flight_info", F.FlightInfo())
    add("default_flight_data", F.FlightData())
    add("default_flight_descriptor", F.FlightDescriptor())
    add("default_flight_endpoint", F.FlightEndpoint())
    add("default_poll_info", F.PollInfo())
    add("default_handshake_request", F.HandshakeRequest())
    add("flight_info_unknown_totals", F.FlightInfo(total_records=-1, total_bytes=-1))
    add("flight_info_extreme_totals", F.FlightInfo(total_records=2**63 - 1, total_bytes=-2**63))
    d7 = F.FlightDescriptor(path=["p"])
    d7.type = 7  # not in DescriptorType (proto3 enums are open)
    add("descriptor_unknown_enum", d7)
    dneg = F.FlightDescriptor(cmd=b"c")
    dneg.type = -1  # negative enum: 10-byte varint
    add("descriptor_negative_enum", dneg)
    add("cancel_flight_info_result_unknown_enum", F.CancelFlightInfoResult(status=99))
    add("poll_info_progress_zero", F.PollInfo(progress=0.0))  # optional: presence is encoded
    add("flight_data_empty_descriptor", F.FlightData(flight_descriptor=F.FlightDescriptor(), data_header=b"h"))
    add("flight_endpoint_empty_ticket_pre_epoch", F.FlightEndpoint(
        ticket=F.Ticket(), expiration_time=Timestamp(seconds=-1, nanos=999999999)))
    add("flight_data_large_body", F.FlightData(data_header=pat(72, 3, 5), data_body=pat(1 << 20, 31, 7)))
    add("handshake_large_payload", F.HandshakeRequest(protocol_version=1, payload=pat(20000, 11, 0)))

    # --- concatenated messages: the bytes are A + B, the value is A.MergeFrom(B) (protobuf merge semantics:
    # singular sub-messages merge recursively, repeated fields append, scalars and map keys: last wins) ---
    def merge(name, a, b):
        merged = type(a)()
        merged.CopyFrom(a)
        merged.MergeFrom(b)
        add(name, merged, concat=a.SerializeToString(deterministic=True) + b.SerializeToString(deterministic=True))

    merge("merge_flight_info",
          F.FlightInfo(flight_descriptor=F.FlightDescriptor(type=F.FlightDescriptor.PATH, path=["warehouse"]),
                       endpoint=[endpoint2()], total_records=5),
          F.FlightInfo(flight_descriptor=F.FlightDescriptor(path=["orders"]), endpoint=[endpoint1()],
                       total_bytes=9, app_metadata=b"m"))
    merge("merge_flight_data",
          F.FlightData(flight_descriptor=F.FlightDescriptor(type=F.FlightDescriptor.CMD, cmd=b"c1"),
                       data_header=b"h1", data_body=b"b1"),
          F.FlightData(flight_descriptor=F.FlightDescriptor(path=["p"]), app_metadata=b"m2"))
    merge("merge_poll_info",
          F.PollInfo(expiration_time=Timestamp(seconds=10), progress=0.75),
          F.PollInfo(expiration_time=Timestamp(nanos=5), progress=0.25))
    merge("merge_session_options_duplicate_key",
          options(S, [("k", "string", "a"), ("other", "bool", True)]),
          options(S, [("k", "int64", 1)]))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flight_proto", help="path to Arrow's format/Flight.proto")
    parser.add_argument("--arrow-commit", default="unknown", help="apache/arrow commit the .proto came from")
    parser.add_argument("--out", default=HERE, help="output directory (default: next to this script)")
    args = parser.parse_args()

    from google.protobuf.internal import api_implementation

    with tempfile.TemporaryDirectory() as workdir:
        F = compile_proto(args.flight_proto, workdir)
        cases = build_cases(F)

        names = [c[0] for c in cases]
        assert len(names) == len(set(names)), "duplicate case names"
        for old in os.listdir(args.out):
            if old.endswith(".bin"):
                os.remove(os.path.join(args.out, old))

        lines = [
            "# FlightProto fixtures written by generate.py. One case per line, tab-separated:",
            "# name, message (full protobuf name), size in bytes, sha256, top-level fields, values.",
            "# top-level fields: number:wiretype:start:valueStart:payloadStart:end (byte offsets; payloadStart",
            "#   is after the length prefix of wire type 2, else = valueStart), ';'-separated, '-' if none.",
            "# values: the fields set, maps in wire order; pattern(n,mul,add) = n bytes, byte i = (i*mul+add) % 256.",
            "# Serialized with SerializeToString(deterministic=True) (only map entry order depends on it).",
            "# merge_* cases: the file is serialize(A) + serialize(B); the values are A.MergeFrom(B), what a",
            "#   reference parser reads from those bytes (their map order is the merged map's, not the wire order).",
        ]
        for name, msg, concat in cases:
            data = msg.SerializeToString(deterministic=True) if concat is None else concat
            # The reference reads its own bytes back to the same message.
            back = type(msg)()
            back.ParseFromString(data)
            assert back == msg, name
            with open(os.path.join(args.out, name + ".bin"), "wb") as f:
                f.write(data)
            fields = top_level_fields(data)
            shown_fields = ";".join(":".join(str(x) for x in f) for f in fields) or "-"
            # Map entries in wire order: read the keys back from the bytes (key = field 1 of each entry).
            wire_maps = {}
            for field in msg.DESCRIPTOR.fields:
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    keys = []
                    for number, wt, _, _, payload_start, end in fields:
                        if number == field.number:
                            entry = field.message_type._concrete_class()
                            entry.ParseFromString(data[payload_start:end])
                            if entry.key not in keys:
                                keys.append(entry.key)
                    wire_maps[field.name] = keys
            lines.append("\t".join([
                name, msg.DESCRIPTOR.full_name, str(len(data)), hashlib.sha256(data).hexdigest(), shown_fields,
                fmt_message(msg, wire_maps),
            ]))
        with open(os.path.join(args.out, "manifest.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

        with open(os.path.join(args.out, "VERSIONS.txt"), "w", encoding="utf-8") as f:
            f.write(f"python {sys.version.split()[0]}\n")
            f.write(f"protobuf {importlib.metadata.version('protobuf')} (backend: {api_implementation.Type()})\n")
            f.write(f"grpcio-tools {importlib.metadata.version('grpcio-tools')}\n")
            protoc = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--version"],
                                    capture_output=True, text=True, check=True).stdout.strip()
            f.write(f"protoc {protoc} (bundled with grpcio-tools)\n")
            f.write(f"apache/arrow {args.arrow_commit} format/Flight.proto "
                    f"(sha256 {hashlib.sha256(open(args.flight_proto, 'rb').read()).hexdigest()})\n")
        print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
