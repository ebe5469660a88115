#!/usr/bin/env python3
"""pyarrow's side of the Flight benchmark (scripts/bench-flight): a reference server and a reference client.

    flight_pyarrow.py server [PORT]
        An in-memory pyarrow FlightServerBase on 127.0.0.1 (port 0 = a free one). DoPut stores the table under
        its descriptor path joined with "/", DoGet (ticket "QUEUE/ID") streams it back from memory, GetFlightInfo
        (PATH descriptor), DoAction "health" and "delete" (body: the key). Prints "listening on grpc://HOST:PORT".
    flight_pyarrow.py client LOCATION doput FILE KEY
        Reads the IPC stream FILE into memory (untimed), then times one DoPut of its batches to path KEY (and
        the PutResult, if the server sends one); deletes KEY afterwards (untimed).
    flight_pyarrow.py client LOCATION load FILE KEY
        The same DoPut, KEY kept (the table DoGet and the small calls use).
    flight_pyarrow.py client LOCATION doget KEY
        Times one DoGet of ticket KEY read into a Table (`read_all`).
    flight_pyarrow.py client LOCATION calls OP KEY THREADS SECONDS
        OP is getflightinfo (PATH descriptor KEY) or health (DoAction); THREADS threads share one client and
        call back to back for SECONDS.
    flight_pyarrow.py alternate KEY ROUNDS LOCATION [LOCATION ...]
        One client per LOCATION in this one process; each round does one DoGet of ticket KEY (`read_all`) from
        every location, the order rotating by one each round. Prints, per location, the median GB/s (of the
        table's `nbytes`) and the median CPU seconds per GB of this process: the same client against servers side
        by side.

Each client command prints one JSON line, the same shape as Benchmarks/FlightBenchmark:
{"impl":"pyarrow","op":…,"seconds":…,…}; "cpu" is the client process's CPU seconds (all threads) in the timed part.  Tool versions: pyarrow 26.0.1, Python 3.11.
"""
import json
import resource
import statistics
import sys
import threading
import time

import pyarrow as pa
import pyarrow.flight as fl


def report(op, **fields):
    print(json.dumps({"impl": "pyarrow", "op": op, **fields}), flush=True)


# ---------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------

class MemoryServer(fl.FlightServerBase):
    def __init__(self, port):
        super().__init__(f"grpc://127.0.0.1:{port}")
        self.tables = {}  # key -> (table, its nbytes): Table.nbytes walks every buffer (~7 ms for 541 MiB)
        self.lock = threading.Lock()
        self.uri = f"grpc://127.0.0.1:{self.port}"

    @staticmethod
    def key(descriptor):
        if descriptor.descriptor_type != fl.DescriptorType.PATH:
            raise fl.FlightServerError("expected a PATH descriptor")
        return "/".join(p.decode() if isinstance(p, bytes) else p for p in descriptor.path)

    def table(self, key):
        with self.lock:
            entry = self.tables.get(key)
        if entry is None:
            raise KeyError(f"no table '{key}'")
        return entry

    def do_put(self, context, descriptor, reader, writer):
        key = self.key(descriptor)
        table = reader.read_all()
        nbytes = table.nbytes
        with self.lock:
            self.tables[key] = (table, nbytes)
        result = {"key": key, "rows": table.num_rows, "bytes": nbytes, "status": "stored"}
        writer.write(pa.py_buffer(json.dumps(result).encode()))

    def do_get(self, context, ticket):
        return fl.RecordBatchStream(self.table(ticket.ticket.decode())[0])

    def get_flight_info(self, context, descriptor):
        key = self.key(descriptor)
        table, nbytes = self.table(key)
        endpoint = fl.FlightEndpoint(key.encode(), [self.uri])
        return fl.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, nbytes)

    def list_actions(self, context):
        return [("health", "liveness"), ("delete", "remove a table")]

    def do_action(self, context, action):
        if action.type == "health":
            with self.lock:
                count = len(self.tables)
            yield fl.Result(pa.py_buffer(json.dumps({"status": "ok", "batches": count}).encode()))
        elif action.type == "delete":
            key = action.body.to_pybytes().decode()
            with self.lock:
                self.tables.pop(key, None)
            yield fl.Result(pa.py_buffer(json.dumps({"key": key, "deleted": True}).encode()))
        else:
            raise fl.FlightServerError(f"unknown action {action.type}")


def serve(port):
    server = MemoryServer(port)
    print(f"listening on {server.uri}", flush=True)
    server.serve()


# ---------------------------------------------------------------------------
# client
# ---------------------------------------------------------------------------

def descriptor(key):
    return fl.FlightDescriptor.for_path(*key.split("/"))


def doput(client, path, key, keep=False):
    with open(path, "rb") as f:
        data = f.read()
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    batches = table.to_batches()
    cpu = time.process_time()
    start = time.perf_counter()
    writer, results = client.do_put(descriptor(key), table.schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.done_writing()
    results.read()  # the server's PutResult (None if it sends none)
    writer.close()
    seconds = time.perf_counter() - start
    report("doput", seconds=seconds, cpu=time.process_time() - cpu, bytes=len(data), rows=table.num_rows)
    if not keep:
        list(client.do_action(fl.Action("delete", key.encode())))


def doget(client, key):
    cpu = time.process_time()
    start = time.perf_counter()
    table = client.do_get(fl.Ticket(key.encode())).read_all()
    seconds = time.perf_counter() - start
    report("doget", seconds=seconds, cpu=time.process_time() - cpu, rows=table.num_rows, batches=len(table.to_batches()))


def calls(client, op, key, threads, duration):
    if op == "getflightinfo":
        path = descriptor(key)

        def call():
            client.get_flight_info(path)
    elif op == "health":
        action = fl.Action("health", b"")

        def call():
            list(client.do_action(action))
    else:
        raise SystemExit(f"unknown call {op}")
    call()  # connect and warm up
    latencies = [[] for _ in range(threads)]
    start = time.perf_counter()
    end = start + duration

    def loop(mine):
        clock = time.perf_counter
        while True:
            t0 = clock()
            if t0 >= end:
                return
            call()
            mine.append(clock() - t0)

    workers = [threading.Thread(target=loop, args=(latencies[i],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    merged = sorted(x for mine in latencies for x in mine)
    report(op, seconds=elapsed, calls=len(merged), concurrency=threads,
           p50=merged[len(merged) // 2], p99=merged[min(len(merged) - 1, int(len(merged) * 0.99))])


def alternate(key, rounds, locations):
    clients = [fl.FlightClient(location) for location in locations]
    ticket = fl.Ticket(key.encode())
    size = clients[0].do_get(ticket).read_all().nbytes
    for client in clients[1:]:  # warm every connection once
        client.do_get(ticket).read_all()
    results = {location: [] for location in locations}
    order = list(range(len(locations)))
    for _ in range(rounds):
        for i in order:
            cpu, faults = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            table = clients[i].do_get(ticket).read_all()
            seconds = time.perf_counter() - start
            used = time.process_time() - cpu
            faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            if table.nbytes != size:
                raise SystemExit(f"{locations[i]} returned {table.nbytes} bytes, not {size}")
            del table
            results[locations[i]].append((size / seconds / 1e9, used / (size / 1e9), faulted / (size / 1e6)))
        order = order[1:] + order[:1]
    for location, values in results.items():
        print(f"{location}: {statistics.median(v[0] for v in values):.2f} GB/s, "
              f"client CPU {statistics.median(v[1] for v in values):.2f} s/GB, "
              f"{statistics.median(v[2] for v in values):.0f} page faults per MB (medians of {rounds})", flush=True)
    for client in clients:
        client.close()


def main(argv):
    if len(argv) >= 1 and argv[0] == "server":
        serve(int(argv[1]) if len(argv) > 1 else 0)
        return
    if len(argv) >= 4 and argv[0] == "alternate":
        alternate(argv[1], int(argv[2]), argv[3:])
        return
    if len(argv) < 3 or argv[0] != "client":
        raise SystemExit(__doc__)
    client = fl.FlightClient(argv[1])
    command, args = argv[2], argv[3:]
    if command == "doput":
        doput(client, args[0], args[1])
    elif command == "load":
        doput(client, args[0], args[1], keep=True)
    elif command == "doget":
        doget(client, args[0])
    elif command == "calls":
        calls(client, args[0], args[1], int(args[2]), float(args[3]))
    else:
        raise SystemExit(__doc__)
    client.close()


if __name__ == "__main__":
    main(sys.argv[1:])
