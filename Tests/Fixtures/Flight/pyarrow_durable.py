"""pyarrow checks of a node's --data-dir (DurableStoreTests).

    pyarrow_durable.py put-and-read URL DIR

Puts a few tables (several record batches, a dictionary column, nested and string types) with DoPut, then
opens each batch's file DIR/QUEUE/ID.arrows with pyarrow's own stream reader and compares it with the table put
(and with what DoGet returns). Prints one JSON line {"checked": N}; exits non-zero on a mismatch.
"""
import json
import sys

import pyarrow as pa
import pyarrow.flight as flight


def tables():
    ints = pa.array(range(10_000), type=pa.int64())
    yield "plain", pa.table({"id": ints, "price": pa.array([i * 0.25 for i in range(10_000)])})
    words = pa.array(["alpha", "beta", None, "delta"] * 500).dictionary_encode()
    yield "dict", pa.table({"w": words, "s": pa.array([f"row {i}" for i in range(2000)])})
    nested = pa.array([[i, i + 1] if i % 3 else None for i in range(3000)], type=pa.list_(pa.int32()))
    structs = pa.array([{"a": i, "b": str(i)} for i in range(3000)])
    yield "nested", pa.table({"l": nested, "st": structs})


def main():
    _, command, url, directory = sys.argv
    assert command == "put-and-read"
    client = flight.connect(url)
    checked = 0
    for name, table in tables():
        descriptor = flight.FlightDescriptor.for_path("durable", name)
        writer, reader = client.do_put(descriptor, table.schema)
        writer.write_table(table, max_chunksize=700)
        writer.done_writing()
        reader.read()
        writer.close()
        with pa.memory_map(f"{directory}/durable/{name}.arrows") as source:
            from_file = pa.ipc.open_stream(source).read_all()
        if not from_file.equals(table):
            print(f"{name}: the file differs from the table put", file=sys.stderr)
            sys.exit(1)
        fetched = client.do_get(flight.Ticket(f"durable/{name}".encode())).read_all()
        if not fetched.equals(table):
            print(f"{name}: DoGet differs from the table put", file=sys.stderr)
            sys.exit(1)
        checked += 1
    print(json.dumps({"checked": checked}))


if __name__ == "__main__":
    main()
