"""HTTP probes for NodeTests (OperationsTests, MetricsTests, DashboardTests): a real HTTP client (urllib),
Prometheus' own parser (prometheus_client) and raw sockets, so the node's HTTP side is checked from outside.

    http_probe.py get URL [--method M] [--header 'Name: value']... [--data TEXT] [--cafile PEM]
        -> {"status": n, "headers": {...}, "body": "..."}
    http_probe.py metrics URL [--header ...]
        -> {"families": {name: {"type": t, "samples": [[sample name, {labels}, value], ...]}}}
    http_probe.py raw HOST PORT HEX [--read-seconds S]
        -> {"response": "...", "closed": bool}  (sends the bytes, reads until close or S seconds)

Each prints one JSON line on stdout; errors print {"error": "..."}. Python 3 standard library plus
prometheus_client (scripts/requirements.txt).
"""
import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.request


def fetch(url, method="GET", headers=(), data=None, cafile=None):
    request = urllib.request.Request(url, method=method, data=data.encode() if data is not None else None)
    for header in headers:
        name, _, value = header.partition(":")
        request.add_header(name.strip(), value.strip())
    try:
        context = None
        if cafile:
            import ssl
            context = ssl.create_default_context(cafile=cafile)
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode("utf-8", "replace")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get")
    get.add_argument("url")
    get.add_argument("--method", default="GET")
    get.add_argument("--header", action="append", default=[])
    get.add_argument("--data")
    get.add_argument("--cafile")
    metrics = sub.add_parser("metrics")
    metrics.add_argument("url")
    metrics.add_argument("--header", action="append", default=[])
    raw = sub.add_parser("raw")
    raw.add_argument("host")
    raw.add_argument("port", type=int)
    raw.add_argument("hex")
    raw.add_argument("--read-seconds", type=float, default=20)
    args = parser.parse_args()

    if args.command == "get":
        status, headers, body = fetch(args.url, args.method, args.header, args.data, args.cafile)
        print(json.dumps({"status": status, "headers": headers, "body": body}))
    elif args.command == "metrics":
        from prometheus_client.parser import text_string_to_metric_families
        status, headers, body = fetch(args.url, headers=args.header)
        if status != 200:
            print(json.dumps({"error": "status %d: %s" % (status, body[:500])}))
            return
        families = {}
        for family in text_string_to_metric_families(body):
            families[family.name] = {
                "type": family.type,
                "samples": [[s.name, dict(s.labels), s.value] for s in family.samples],
            }
        print(json.dumps({"families": families, "content_type": headers.get("Content-Type", "")}))
    else:
        connection = socket.create_connection((args.host, args.port), timeout=args.read_seconds)
        connection.sendall(bytes.fromhex(args.hex))
        received = b""
        closed = False
        deadline = time.monotonic() + args.read_seconds
        while time.monotonic() < deadline:
            connection.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = connection.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
        connection.close()
        print(json.dumps({"response": received.decode("latin-1"), "closed": closed}))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # one JSON line whatever happened
        print(json.dumps({"error": "%s: %s" % (type(error).__name__, error)}))
        sys.exit(0)
