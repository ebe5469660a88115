"""Submit an Arrow table to ValkeyFlight, wait until it is processed, read the result.

Uses only pyarrow.flight (no ValkeyFlight package):
  - DoPut with descriptor path [QUEUE] stores the table as one batch; the PutResult's app_metadata is JSON
    {"key": "QUEUE/ID", "rows": ..., "bytes": ..., "status": "pending"};
  - DoAction "status" with the key as body returns the batch's status object (JSON);
  - DoGet with ticket "QUEUE/ID/result" returns the processed table;
  - DoExchange with descriptor path [QUEUE] does all three in one call.

    python submit_and_wait.py grpc://127.0.0.1:8815 [QUEUE]
"""
import json
import sys
import time

import pyarrow as pa
import pyarrow.flight as flight


def submit(client, queue, table):
    descriptor = flight.FlightDescriptor.for_path(queue)
    writer, reader = client.do_put(descriptor, table.schema)
    writer.write_table(table)
    writer.done_writing()
    put_result = json.loads(reader.read().to_pybytes())
    writer.close()
    return put_result["key"]


def status(client, key):
    results = list(client.do_action(flight.Action("status", key.encode())))
    return json.loads(results[0].body.to_pybytes())


def wait(client, key, timeout=60.0):
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        current = status(client, key)
        if current["status"] in ("completed", "failed", "cancelled"):
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} still {current['status']} after {timeout}s")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def main():
    location = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:8815"
    queue = sys.argv[2] if len(sys.argv) > 2 else "default"
    client = flight.connect(location)
    table = pa.table({"id": pa.array(range(1000), pa.int64()),
                      "price": pa.array([i * 0.5 for i in range(1000)], pa.float64())})

    key = submit(client, queue, table)
    final = wait(client, key)
    if final["status"] != "completed":
        sys.exit(f"{key} ended {final['status']}: {final['last_error']}")
    result = client.do_get(flight.Ticket(final["result_key"].encode())).read_all()
    print(json.dumps({"via": "do_put+status+do_get", "key": key, "status": final["status"],
                      "attempts": final["attempts"], "result_rows": result.num_rows,
                      "result_columns": result.column_names}))

    writer, reader = client.do_exchange(flight.FlightDescriptor.for_path(queue))
    writer.begin(table.schema)
    writer.write_table(table)
    writer.done_writing()
    exchanged = reader.read_all()
    writer.close()
    print(json.dumps({"via": "do_exchange", "result_rows": exchanged.num_rows,
                      "result_columns": exchanged.column_names}))


if __name__ == "__main__":
    main()
