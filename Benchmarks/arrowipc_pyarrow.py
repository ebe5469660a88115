#!/usr/bin/env python3
"""pyarrow's side of the Arrow IPC benchmark: same file, same operations, same JSON lines as
ArrowIPCBenchmark.  Usage: arrowipc_pyarrow.py FILE [REPETITIONS]"""
import json
import sys
import time

import numpy as np
import pyarrow as pa


def report(op, seconds, nbytes, **extra):
    print(json.dumps({"impl": "pyarrow", "op": op, "seconds": seconds, "bytes": nbytes, **extra}), flush=True)


def main(path, repetitions):
    with open(path, "rb") as f:
        data = f.read()
    buf = pa.py_buffer(data)
    source = np.frombuffer(data, dtype=np.uint8)
    for _ in range(repetitions):
        target = np.empty_like(source)
        start = time.perf_counter()
        np.copyto(target, source)
        report("memcpy", time.perf_counter() - start, len(data))

        start = time.perf_counter()
        table = pa.ipc.open_stream(buf).read_all()
        report("open", time.perf_counter() - start, len(data), batches=len(table.to_batches()), rows=table.num_rows)

        start = time.perf_counter()
        table.validate(full=True)
        report("validate_full", time.perf_counter() - start, len(data))

        batches = table.to_batches()
        start = time.perf_counter()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        out = sink.getvalue()
        report("write_contiguous", time.perf_counter() - start, out.size)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
