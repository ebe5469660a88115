"""Helper for writing ValkeyFlight batch processors in Python with pyarrow.

Write a function ``process(table, context) -> table`` and call ``run(process)``::

    from valkeyflight_processor import run

    def process(table, context):
        return table.append_column("source", pa.array([context.key] * table.num_rows))

    if __name__ == "__main__":
        run(process)

The same script works in both modes of the worker:

* ``valkeyflight worker --exec 'python my_processor.py'`` (one-shot): one process per batch. The batch is an
  Arrow IPC stream on stdin, the result is written as an Arrow IPC stream on stdout; the batch is described by
  ``VALKEYFLIGHT_KEY``, ``VALKEYFLIGHT_QUEUE``, ``VALKEYFLIGHT_ID`` and ``VALKEYFLIGHT_ATTEMPT``. An exception
  prints its traceback on stderr and exits 1, which fails the attempt with the end of the traceback as
  ``last_error``.
* ``valkeyflight worker --exec-persistent 'python my_processor.py'``: one long-lived process per worker slot
  (``VALKEYFLIGHT_PERSISTENT=1``) answers batch after batch over stdin/stdout with the framing below, so
  Python and pyarrow start once instead of once per batch. An exception answers with an error (the batch's
  attempt fails with the message) and the process goes on with the next batch.

Persistent framing (all integers little-endian)::

    request  (stdin):  b"VFQ1"  u32 json_length  json  u64 ipc_length  ipc
                       json = {"key": "QUEUE/ID", "queue": "QUEUE", "id": "ID", "attempt": N}
    answer   (stdout): b"VFR1"  u32 status (0 ok, 1 error)  u64 length  payload
                       payload = the result as an Arrow IPC stream (ok) or UTF-8 error text (error)

In both modes ``print()`` goes to stderr: stdout carries only Arrow data.
"""

import json
import os
import struct
import sys
import traceback

import pyarrow as pa

__all__ = ["Context", "run"]

_REQUEST_MAGIC = b"VFQ1"
_ANSWER_MAGIC = b"VFR1"
_MAX_JSON = 65536


class Context:
    """What the processor knows about the batch: key (``QUEUE/ID``), queue, id and attempt (1-based)."""

    __slots__ = ("key", "queue", "id", "attempt")

    def __init__(self, key, queue, id, attempt):
        self.key = key
        self.queue = queue
        self.id = id
        self.attempt = attempt

    def __repr__(self):
        return f"Context(key={self.key!r}, attempt={self.attempt})"


def _as_table(result):
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    raise TypeError(f"process() must return a pyarrow Table or RecordBatch, not {type(result).__name__}")


def _write_stream(sink, table):
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def _read_exact(stream, count):
    data = bytearray(count)
    view = memoryview(data)
    filled = 0
    while filled < count:
        n = stream.readinto(view[filled:])
        if not n:
            return None if filled == 0 else bytes(data[:filled])
        filled += n
    return data


def _one_shot(process, stdin, stdout):
    key = os.environ.get("VALKEYFLIGHT_KEY", "")
    queue = os.environ.get("VALKEYFLIGHT_QUEUE", key.split("/")[0])
    batch_id = os.environ.get("VALKEYFLIGHT_ID", key.split("/")[-1])
    context = Context(key, queue, batch_id, int(os.environ.get("VALKEYFLIGHT_ATTEMPT", "1")))
    table = pa.ipc.open_stream(stdin).read_all()
    _write_stream(stdout, _as_table(process(table, context)))
    stdout.flush()


def _persistent(process, stdin, stdout):
    while True:
        head = _read_exact(stdin, 8)
        if head is None:
            return  # stdin closed: ValkeyFlight is done with us
        if len(head) < 8:
            raise EOFError("truncated request header")
        magic, json_length = struct.unpack("<4sI", head)
        if magic != _REQUEST_MAGIC or json_length > _MAX_JSON:
            raise ValueError(f"bad request header {bytes(head)!r}")
        meta = json.loads(bytes(_read_exact(stdin, json_length)))
        (ipc_length,) = struct.unpack("<Q", bytes(_read_exact(stdin, 8)))
        data = _read_exact(stdin, ipc_length) if ipc_length else b""
        if data is None or len(data) < ipc_length:
            raise EOFError("truncated request")
        context = Context(meta["key"], meta["queue"], meta["id"], int(meta["attempt"]))
        try:
            table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
            sink = pa.BufferOutputStream()
            _write_stream(sink, _as_table(process(table, context)))
            payload = sink.getvalue()
            status = 0
        except Exception as error:  # the batch fails, the process goes on
            traceback.print_exc(file=sys.stderr)
            payload = f"{type(error).__name__}: {error}".encode("utf-8", "replace")
            status = 1
        stdout.write(struct.pack("<4sIQ", _ANSWER_MAGIC, status, len(payload)))
        stdout.write(payload)
        stdout.flush()


def run(process):
    """Runs ``process(table, context) -> table`` on the batches ValkeyFlight sends (either mode)."""
    # Arrow data leaves through a private copy of fd 1; fd 1 itself (and so print()) goes to stderr.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    if os.environ.get("VALKEYFLIGHT_PERSISTENT") == "1":
        _persistent(process, stdin, stdout)
    else:
        _one_shot(process, stdin, stdout)
    stdout.close()
