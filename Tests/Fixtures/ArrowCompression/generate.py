"""Generates the codec fixtures under frames/ with the reference C codecs:
pyarrow 26.0.1's pa.Codec (lz4 frame, zstd), and Debian's lz4 1.9.4 and zstd 1.5.4 command-line tools for the
format's edge cases (linked blocks, block checksums, 64 KiB blocks, content checksums, large windows, concatenated
frames). Run: .venv/bin/python Tests/Fixtures/ArrowCompression/generate.py

Each fixture is frames/INPUT.VARIANT.{lz4,zst}; INPUT names a generator of corpus.py."""
import os
import subprocess
import sys

import pyarrow as pa

sys.path.insert(0, os.path.dirname(__file__))
from corpus import INPUTS  # noqa: E402

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frames")
os.makedirs(here, exist_ok=True)


def tool(args, data):
    return subprocess.run(args, input=data, stdout=subprocess.PIPE, check=True).stdout


def write(name, data):
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)


for name, make in INPUTS.items():
    data = make()
    write(f"{name}.pyarrow.lz4", pa.Codec("lz4").compress(data, asbytes=True))
    for level in (1, 3, 19):
        write(f"{name}.pyarrow-l{level}.zst", pa.Codec("zstd", compression_level=level).compress(data, asbytes=True))
    if name in ("empty", "text", "random", "mixed", "zeros"):
        write(f"{name}.linked.lz4", tool(["lz4", "-q", "-c", "-BD", "-B4"], data))
        write(f"{name}.blockchecksum.lz4", tool(["lz4", "-q", "-c", "-BX", "-B4", "--content-size"], data))
        write(f"{name}.hc.lz4", tool(["lz4", "-q", "-c", "-9", "--no-frame-crc"], data))
        write(f"{name}.checksum.zst", tool(["zstd", "-q", "-c", "-C", "-3"], data))
        write(f"{name}.ultra.zst", tool(["zstd", "-q", "-c", "--ultra", "-22", "--no-check"], data))
        # From a pipe the CLI knows no size: no content size, the full window descriptor.
        write(f"{name}.window27.zst", tool(["sh", "-c", "cat | zstd -q -c --long=27 -5"], data))
        write(f"{name}.concat.zst", tool(["zstd", "-q", "-c", "-1"], data[: len(data) // 2])
              + tool(["zstd", "-q", "-c", "-1"], data[len(data) // 2:]))
        write(f"{name}.concat.lz4", tool(["lz4", "-q", "-c"], data[: len(data) // 2])
              + tool(["lz4", "-q", "-c"], data[len(data) // 2:]))
# A window beyond the decoder's default limit (128 MiB): rejected before decoding.
write("text.window28.zst", tool(["sh", "-c", "cat | zstd -q -c --long=28 -5"], INPUTS["text"]()))
print("wrote", len(os.listdir(here)), "fixtures to", here)
