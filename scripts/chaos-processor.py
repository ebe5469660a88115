"""The processor of scripts/chaos and the multi-host cluster tests (Tests/NodeTests/MultiHostClusterTests.swift).

Doubles `price` and adds the columns `attempt` (the attempt that made this result, 1-based) and `key`, so the
client can tell a correct result (price × 2 of what it submitted, for that key) and one from a stale attempt
(`attempt` differs from the attempts the batch's status counts). CHAOS_PROCESS_SECONDS (default 0) makes each batch
take that long, so that faults find batches in the middle of processing; with CHAOS_MARK_DIR set, each batch
writes its key to CHAOS_MARK_DIR/CHAOS_HOST-PID.key while it is processed (the file is removed when the processor
is done with it; tests wait for one to know that a worker holds a batch).

    valkeyflight worker --exec-persistent 'python scripts/chaos-processor.py' …
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "python"))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from valkeyflight_processor import run  # noqa: E402

DELAY = float(os.environ.get("CHAOS_PROCESS_SECONDS", "0") or 0)
MARKS = os.environ.get("CHAOS_MARK_DIR")
HOST = os.environ.get("CHAOS_HOST", "host")


def process(table, context):
    if MARKS:
        path = os.path.join(MARKS, f"{HOST}-{os.getpid()}.key")
        with open(path + ".tmp", "w") as mark:
            mark.write(context.key + "\n")
        os.replace(path + ".tmp", path)
    if DELAY > 0:
        time.sleep(DELAY)
    if MARKS:
        os.remove(path)
    rows = table.num_rows
    price = table.schema.get_field_index("price")
    out = table.set_column(price, "price", pc.multiply(table.column("price"), 2.0))
    out = out.append_column("attempt", pa.array([context.attempt] * rows, pa.int32()))
    return out.append_column("key", pa.array([context.key] * rows, pa.string()))


if __name__ == "__main__":
    run(process)
