"""Decompresses our frames with pyarrow's C codecs: decompress.py CODEC SIZE IN OUT [IN OUT ...]."""
import sys

import pyarrow as pa

codec = pa.Codec(sys.argv[1])
size = int(sys.argv[2])
pairs = sys.argv[3:]
for i in range(0, len(pairs), 2):
    with open(pairs[i], "rb") as f:
        data = f.read()
    out = codec.decompress(data, decompressed_size=size if size >= 0 else None, asbytes=True)
    with open(pairs[i + 1], "wb") as f:
        f.write(out)
