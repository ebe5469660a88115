#!/usr/bin/env python3
"""Compressed IPC fixtures written by pyarrow's C codecs (IpcWriteOptions(compression=...)).

Writes into Tests/Fixtures/ArrowIPC/compressed/, for every case NAME of ../generate.py plus the cases below,
and CODEC in lz4, zstd:
    NAME.CODEC.arrows  IPC stream;  NAME.CODEC.arrow  IPC file (a few cases)
plus VERSIONS.txt. Deterministic for a given pyarrow version.

    .venv/bin/python Tests/Fixtures/ArrowIPC/compressed/generate.py
"""
import glob
import os
import sys

import numpy as np
import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True
import generate as base  # noqa: E402


def case_incompressible():
    rng = np.random.default_rng(11)
    ints = pa.array(rng.integers(-2**63, 2**63 - 1, 3000, dtype=np.int64))
    blobs = pa.array([rng.bytes(int(n)) for n in rng.integers(0, 12, 3000)], pa.binary())
    return None, [pa.record_batch([ints, blobs], names=["ints", "blobs"])]


def case_all_null():
    n = 1000
    cols = [pa.nulls(n, pa.int64()), pa.nulls(n, pa.string()), pa.nulls(n, pa.list_(pa.float64())),
            pa.nulls(n, pa.string_view()), pa.array([None] * n, pa.dictionary(pa.int32(), pa.string()))]
    names = ["i", "s", "l", "v", "d"]
    return None, [pa.record_batch(cols, names=names), pa.record_batch([c.slice(0, 0) for c in cols], names=names)]


def case_views_large():
    rng = np.random.default_rng(12)
    words = ["short", "a much longer string than twelve bytes", "", "mid-size-str", "x" * 40]
    s = pa.array([words[int(i)] for i in rng.integers(0, len(words), 6000)], pa.string_view())
    b = pa.array([w.encode() for w in s.to_pylist()], pa.binary_view())
    ints = pa.array(np.arange(6000, dtype=np.int64) * 3)
    return None, [pa.record_batch([s, b, ints], names=["s", "b", "ints"]).slice(100, 5000)]


EXTRA = [("incompressible", case_incompressible), ("all_null", case_all_null), ("views_large", case_views_large)]
FILES = {"primitive", "dictionary", "incompressible", "nested"}


def main():
    for old in glob.glob(os.path.join(HERE, "*.arrow*")):
        os.remove(old)
    total = 0
    for name, fn in base.CASES + EXTRA:
        res = fn()
        schema, batches = res[0], res[1]
        stream_only = res[2] if len(res) > 2 else False
        opts = res[3] if len(res) > 3 else None
        if schema is None:
            schema = batches[0].schema
        for codec in ("lz4", "zstd"):
            kinds = [("arrows", pa.ipc.new_stream)]
            if name in FILES and not stream_only:
                kinds.append(("arrow", pa.ipc.new_file))
            for ext, opener in kinds:
                options = opts if opts is not None else pa.ipc.IpcWriteOptions()
                options.compression = codec
                sink = pa.BufferOutputStream()
                with opener(sink, schema, options=options) as w:
                    for b in batches:
                        w.write_batch(b)
                data = sink.getvalue().to_pybytes()
                path = os.path.join(HERE, "%s.%s.%s" % (name, codec, ext))
                with open(path, "wb") as f:
                    f.write(data)
                total += len(data)
                print("%8d  %s" % (len(data), os.path.basename(path)))
    with open(os.path.join(HERE, "VERSIONS.txt"), "w") as f:
        f.write("pyarrow %s\nnumpy %s\npython %s\n" % (pa.__version__, np.__version__, sys.version.split()[0]))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
