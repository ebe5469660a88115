"""The client of scripts/chaos and the multi-host cluster tests: submits batches to several Flight nodes and accounts
for every one it was told was stored, using nothing but pyarrow.flight.

    chaos-client.py submit --nodes grpc://A,grpc://B --queue Q [--per-node N] [--seconds S] [--until-eof]
                           [--rows R] [--interval SECONDS] [--timeout SECONDS]
        One thread per node submits batch after batch (DoPut, descriptor [Q]): `id` 0..R-1 and `price` =
        id × 0.5 + seed, a fresh seed per batch. Prints one JSON line per attempt, flushed:
        {"event": "ack", "key", "node", "seed", "rows"} once the node answered its PutResult (acknowledged), or
        {"event": "error", "node", "error"}; then {"event": "done", "acknowledged", "errors"}. Stops after N
        attempts per node, after S seconds, or (--until-eof) when stdin ends, whichever comes first.

    chaos-client.py verify --nodes … --acks FILE --queue Q [--timeout SECONDS] [--worker-logs FILE…]
        Reads the ack lines of FILE, waits (at most --timeout) until every acknowledged batch is finished, reads
        each completed batch's result from the node that holds it and checks it: price × 2 of what was submitted,
        `key` the batch's key, `attempt` the attempt that completed it (the status's `attempts`). Prints one JSON
        object: acknowledged, completed, failed {reason: count}, cancelled, lost (no status at all), stuck (not
        finished in time), wrong_results, stale_results, completed_twice (keys with more than one completed
        attempt in the worker logs), unacknowledged_registered (stored although the client was not told so),
        `shown` (the status objects of the --show keys) and `ok` (nothing lost, stuck, wrong or duplicated). Exit 0 when ok, else 1.

The processor is scripts/chaos-processor.py (it doubles `price` and adds `attempt` and `key`).
"""
import argparse
import json
import re
import sys
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight

TERMINAL = ("completed", "failed", "cancelled")
_print_lock = threading.Lock()


def emit(record):
    with _print_lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def table_for(seed, rows):
    return pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "price": pa.array([i * 0.5 + seed for i in range(rows)], pa.float64()),
    })


def one_line(error):
    return " ".join(str(error).split())[:300]


def submit_one(client, queue, table, timeout):
    options = flight.FlightCallOptions(timeout=timeout)
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(queue), table.schema, options=options)
    writer.write_table(table)
    writer.done_writing()
    answer = reader.read()
    writer.close()
    if answer is None:
        raise RuntimeError("no PutResult")
    return json.loads(answer.to_pybytes())


def cmd_submit(args):
    nodes = [n for n in args.nodes.split(",") if n]
    stop = threading.Event()
    seeds = iter(range(1, 1 << 40))
    seed_lock = threading.Lock()
    counts = {"acknowledged": 0, "errors": 0}
    deadline = time.monotonic() + args.seconds if args.seconds else None

    def next_seed():
        with seed_lock:
            return next(seeds)

    def submitter(node):
        client = flight.connect(node)
        attempts = 0
        while not stop.is_set() and (args.per_node is None or attempts < args.per_node):
            if deadline is not None and time.monotonic() >= deadline:
                break
            attempts += 1
            seed = next_seed()
            try:
                put = submit_one(client, args.queue, table_for(seed, args.rows), args.timeout)
                with seed_lock:
                    counts["acknowledged"] += 1
                emit({"event": "ack", "key": put["key"], "node": node, "seed": seed, "rows": args.rows,
                      "t": round(time.time(), 3)})
            except Exception as error:  # a node down or cut off: not acknowledged, go on
                with seed_lock:
                    counts["errors"] += 1
                emit({"event": "error", "node": node, "error": one_line(error), "t": round(time.time(), 3)})
                try:
                    client.close()
                except Exception:
                    pass
                client = flight.connect(node)
                stop.wait(min(1.0, args.timeout))
            if args.interval:
                stop.wait(args.interval)
        try:
            client.close()
        except Exception:
            pass

    threads = [threading.Thread(target=submitter, args=(node,), daemon=True) for node in nodes]
    for thread in threads:
        thread.start()
    if args.until_eof:
        def watch_stdin():
            sys.stdin.read()
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()
    for thread in threads:
        thread.join()
    emit({"event": "done", **counts})


class Nodes:
    """Calls on whichever node answers, starting from the last one that did."""

    def __init__(self, nodes, timeout):
        self.nodes = nodes
        self.timeout = timeout
        self.clients = {}
        self.current = 0

    def client(self, node):
        if node not in self.clients:
            self.clients[node] = flight.connect(node)
        return self.clients[node]

    def drop(self, node):
        client = self.clients.pop(node, None)
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def action(self, kind, body):
        """The JSON results of an action; KeyError when the batch does not exist (NOT_FOUND)."""
        last = None
        for offset in range(len(self.nodes)):
            node = self.nodes[(self.current + offset) % len(self.nodes)]
            try:
                options = flight.FlightCallOptions(timeout=self.timeout)
                results = list(self.client(node).do_action(flight.Action(kind, body.encode()), options=options))
                self.current = (self.current + offset) % len(self.nodes)
                return [json.loads(r.body.to_pybytes()) for r in results]
            except flight.FlightError as error:  # unavailable, timed out: try the next node
                last = error
                self.drop(node)
            except KeyError:
                raise
            except Exception as error:
                if isinstance(error, pa.ArrowKeyError) or "NOT_FOUND" in str(error):
                    raise KeyError(body)
                last = error
                self.drop(node)
        raise RuntimeError(f"no node answered {kind}: {one_line(last)}")

    def get(self, location, ticket):
        options = flight.FlightCallOptions(timeout=self.timeout)
        try:
            return self.client(location).do_get(flight.Ticket(ticket.encode()), options=options).read_all()
        except Exception:
            self.drop(location)
            raise


def reason_of(error):
    """A failure reason without keys, addresses and numbers, so that equal reasons count together."""
    text = error or "(no error recorded)"
    if "data gone" in text:
        return "input data gone"
    text = re.sub(r"grpc(\+tls)?://[^\s]+", "grpc://NODE", text)
    text = re.sub(r"\b[A-Za-z0-9._-]+/[A-Za-z0-9._-]+\b", "Q/ID", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:160]


def completed_twice(paths):
    counts = {}
    for path in paths or []:
        try:
            with open(path, errors="replace") as log:
                for line in log:
                    if "batch attempt ended" not in line or "outcome=completed" not in line:
                        continue
                    match = re.search(r"key=(\S+)", line)
                    if match:
                        key = match.group(1).strip('"')
                        counts[key] = counts.get(key, 0) + 1
        except OSError:
            continue
    return sorted(key for key, count in counts.items() if count > 1)


def cmd_verify(args):
    acks = {}
    errors = 0
    with open(args.acks) as source:
        for line in source:
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("event") == "ack":
                acks[record["key"]] = record
            elif record.get("event") == "error":
                errors += 1
    nodes = Nodes([n for n in args.nodes.split(",") if n], args.call_timeout)
    deadline = time.monotonic() + args.timeout
    statuses = {}
    lost = set()
    while True:
        listed = {}
        try:
            for status in nodes.action("list", json.dumps({"queue": args.queue, "limit": 10000})):
                listed[status["key"]] = status
        except RuntimeError:
            pass
        for key in acks:
            if key in listed:
                statuses[key] = listed[key]
                lost.discard(key)
            elif len(listed) >= 10000 or not listed:
                try:
                    statuses[key] = nodes.action("status", key)[0]
                    lost.discard(key)
                except KeyError:
                    lost.add(key)
                except RuntimeError:
                    pass
            else:
                lost.add(key)
        open_keys = [k for k in acks if k not in lost and statuses.get(k, {}).get("status") not in TERMINAL]
        if (not open_keys and not lost) or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    unacknowledged = sorted(k for k in listed if k not in acks)

    summary = {"acknowledged": len(acks), "submit_errors": errors, "completed": 0, "failed": {}, "cancelled": 0,
               "lost": sorted(lost), "stuck": [], "wrong_results": [], "stale_results": [],
               "completed_twice": completed_twice(args.worker_logs),
               "unacknowledged_registered": len(unacknowledged), "attempts_max": 0}
    for key, ack in sorted(acks.items()):
        if key in lost:
            continue
        status = statuses.get(key, {})
        state = status.get("status")
        summary["attempts_max"] = max(summary["attempts_max"], status.get("attempts") or 0)
        if state == "failed":
            reason = reason_of(status.get("last_error"))
            summary["failed"][reason] = summary["failed"].get(reason, 0) + 1
            continue
        if state == "cancelled":
            summary["cancelled"] += 1
            continue
        if state != "completed":
            summary["stuck"].append({"key": key, "status": state, "last_error": status.get("last_error")})
            continue
        summary["completed"] += 1
        try:
            result = None
            for _ in range(10):  # the node holding it may be restarting: bounded
                try:
                    result = nodes.get(status["location"], status.get("result_key") or key + "/result")
                    break
                except Exception as error:
                    last = error
                    time.sleep(0.5)
            if result is None:
                raise RuntimeError(f"result unreadable: {one_line(last)}")
            expected = [(i * 0.5 + ack["seed"]) * 2 for i in range(ack["rows"])]
            prices = result.column("price").to_pylist()
            keys = set(result.column("key").to_pylist())
            attempts = set(result.column("attempt").to_pylist())
            if prices != expected or keys != {key}:
                summary["wrong_results"].append({"key": key, "why": f"rows={len(prices)} keys={sorted(keys)[:3]}"})
            elif attempts != {status.get("attempts")}:
                summary["stale_results"].append({"key": key, "result_attempt": sorted(attempts),
                                                 "attempts": status.get("attempts")})
        except Exception as error:
            summary["wrong_results"].append({"key": key, "why": one_line(error)})
    summary["shown"] = {key: statuses.get(key) for key in args.show or []}
    summary["ok"] = not (summary["lost"] or summary["stuck"] or summary["wrong_results"] or summary["stale_results"]
                         or summary["completed_twice"])
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit")
    submit.add_argument("--nodes", required=True)
    submit.add_argument("--queue", required=True)
    submit.add_argument("--per-node", type=int)
    submit.add_argument("--seconds", type=float)
    submit.add_argument("--until-eof", action="store_true")
    submit.add_argument("--rows", type=int, default=100)
    submit.add_argument("--interval", type=float, default=0.0)
    submit.add_argument("--timeout", type=float, default=5.0)
    verify = sub.add_parser("verify")
    verify.add_argument("--nodes", required=True)
    verify.add_argument("--queue", required=True)
    verify.add_argument("--acks", required=True)
    verify.add_argument("--timeout", type=float, default=60.0)
    verify.add_argument("--call-timeout", type=float, default=5.0)
    verify.add_argument("--worker-logs", nargs="*")
    verify.add_argument("--show", nargs="*", help="keys whose status objects to include")
    args = parser.parse_args()
    if args.command == "submit":
        if args.per_node is None and args.seconds is None and not args.until_eof:
            parser.error("submit needs --per-node, --seconds or --until-eof")
        cmd_submit(args)
        return 0
    return cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
