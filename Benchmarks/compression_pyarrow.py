"""pyarrow's side of scripts/bench-compression: pa.Codec per buffer, and IpcWriteOptions(compression=...) for
the whole stream (use_threads=False: one core, like ours).
    compression_pyarrow.py make PATH ROWS     writes the benchmark table as an uncompressed IPC stream
    compression_pyarrow.py run PATH [ROUNDS]  prints `pyarrow CODEC OPERATION GB/s BYTES` lines
"""
import sys
import time

import numpy as np
import pyarrow as pa

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
         "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"]


def make(path, rows):
    rng = np.random.default_rng(42)
    batch_rows = 1 << 20
    schema = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us")), ("price", pa.float64()),
                        ("qty", pa.int32()), ("city", pa.string()), ("flag", pa.bool_())])
    words = pa.array(WORDS)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        start = 0
        while start < rows:
            n = min(batch_rows, rows - start)
            ids = np.arange(start, start + n, dtype=np.int64)
            ts = 1_700_000_000_000_000 + ids * 1000 + rng.integers(0, 1000, n)
            price = np.round(rng.gamma(2.0, 50.0, n), 2)
            qty = rng.integers(1, 100, n, dtype=np.int32)
            city = words.take(pa.array(rng.zipf(1.5, n) % len(WORDS)))
            flag = pa.array(rng.random(n) < 0.1)
            writer.write_batch(pa.record_batch([pa.array(ids), pa.array(ts, pa.timestamp("us")), pa.array(price),
                                                pa.array(qty), city, flag], schema=schema))
            start += n


def best(rounds, fn):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(path, rounds):
    table = pa.ipc.open_stream(pa.memory_map(path)).read_all()
    buffers = [b for batch in table.to_batches() for col in batch.columns for b in col.buffers()
               if b is not None and b.size > 0]
    total = sum(b.size for b in buffers)
    for name in ("lz4", "zstd"):
        codec = pa.Codec(name)
        frames = []

        def encode():
            frames.clear()
            frames.extend(codec.compress(b) for b in buffers)
        t = best(rounds, encode)
        size = sum(f.size for f in frames)
        print("pyarrow %s encode %.3f %d" % (name, total / t / 1e9, size))

        def decode():
            for f, b in zip(frames, buffers):
                codec.decompress(f, decompressed_size=b.size)
        t = best(rounds, decode)
        print("pyarrow %s decode %.3f %d" % (name, total / t / 1e9, size))
        options = pa.ipc.IpcWriteOptions(compression=name, use_threads=False)
        out = []

        def write():
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema, options=options) as w:
                w.write_table(table)
            out[:] = [sink.getvalue()]
        t = best(rounds, write)
        print("pyarrow %s ipc-write %.3f %d" % (name, total / t / 1e9, out[0].size))

        def read():
            pa.ipc.open_stream(out[0], options=pa.ipc.IpcReadOptions(use_threads=False)).read_all()
        t = best(rounds, read)
        print("pyarrow %s ipc-read %.3f %d" % (name, total / t / 1e9, out[0].size))
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    else:
        run(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
