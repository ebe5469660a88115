"""Deterministic test inputs, reproduced byte for byte by Tests/ArrowCompressionTests/Corpus.swift."""

MASK = (1 << 64) - 1
WORDS = ["arrow", "flight", "valkey", "batch", "column", "buffer", "stream", "record", "schema", "zstd", "lz4",
         "frame", "block", "literal", "match", "offset", "huffman", "entropy", "window", "checksum"]


def lcg(seed):
    x = seed & MASK
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
        yield x >> 33


def text(n, seed):
    out = bytearray()
    g = lcg(seed)
    while len(out) < n:
        out += WORDS[next(g) % len(WORDS)].encode() + b" "
    return bytes(out[:n])


def random_bytes(n, seed):
    g = lcg(seed)
    return bytes(next(g) & 0xFF for _ in range(n))


def ints(n):
    out = bytearray()
    for i in range(n // 8):
        out += ((i * 3) & MASK).to_bytes(8, "little")
    return bytes(out)


def mixed(n):
    out = bytearray()
    chunk = 0
    while len(out) < n:
        out += text(4096, chunk) if chunk % 2 == 0 else random_bytes(256, chunk)
        chunk += 1
    return bytes(out[:n])


INPUTS = {
    "empty": lambda: b"",
    "one": lambda: b"A",
    "zeros": lambda: bytes(300_000),
    "text": lambda: text(200_000, 1),
    "random": lambda: random_bytes(20_000, 2),
    "ints": lambda: ints(160_000),
    "mixed": lambda: mixed(260_000),
}
