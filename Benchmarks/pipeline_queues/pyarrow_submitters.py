"""End-to-end batches/s when several pyarrow Flight clients submit to one ValkeyFlight node.

    python pyarrow_submitters.py grpc://127.0.0.1:PORT BATCHES CLIENTS [QUEUE]

Each of CLIENTS processes opens its own pyarrow.flight connection and DoPuts BATCHES/CLIENTS one-row tables
(int64 + float64) under descriptor [QUEUE]; the clock runs from the first DoPut to the moment the node's
`stats` action reports every batch of QUEUE completed. Prints one JSON line.
"""
import json
import multiprocessing
import sys
import time

import pyarrow as pa
import pyarrow.flight as flight


def submit(location, count, queue, ready, start):
    client = flight.connect(location)
    table = pa.table({"id": pa.array([1], pa.int64()), "value": pa.array([0.5], pa.float64())})
    descriptor = flight.FlightDescriptor.for_path(queue)
    ready.wait()
    start.wait()
    for _ in range(count):
        writer, reader = client.do_put(descriptor, table.schema)
        writer.write_table(table)
        writer.done_writing()
        reader.read()
        writer.close()


def completed(client, queue):
    stats = json.loads(list(client.do_action(flight.Action("stats", b"")))[0].body.to_pybytes())
    return stats.get(queue, {}).get("completed", 0)


def main():
    location, batches, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    queue = sys.argv[4] if len(sys.argv) > 4 else "bench"
    ready = multiprocessing.Barrier(clients + 1)
    start = multiprocessing.Barrier(clients + 1)
    per = [batches // clients + (1 if i < batches % clients else 0) for i in range(clients)]
    processes = [multiprocessing.Process(target=submit, args=(location, n, queue, ready, start)) for n in per]
    for process in processes:
        process.start()
    client = flight.connect(location)
    before = completed(client, queue)
    ready.wait()
    began = time.monotonic()
    start.wait()
    deadline = began + 600
    while completed(client, queue) - before < batches:
        if time.monotonic() > deadline:
            sys.exit("timed out after 600 s")
        time.sleep(0.005)
    elapsed = time.monotonic() - began
    for process in processes:
        process.join(timeout=30)
    print(json.dumps({"batches": batches, "clients": clients, "seconds": round(elapsed, 3),
                      "batches_per_second": round(batches / elapsed)}))


if __name__ == "__main__":
    main()
