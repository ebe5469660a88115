#!/usr/bin/env python3
"""Print a canonical, bit-exact JSON dump of an Arrow IPC stream or file.

Usage: canonical_dump.py [--cdata | --check] FILE

Output (one line, json.dumps(obj, separators=(",", ":"), ensure_ascii=True)):
    {"batches":[{"rows":N,"columns":[COL,...]},...]}
Each COL is a JSON array with one value per row; see README.md for the value
encoding per type.

Two independent implementations live here:
  * the default walks pyarrow Arrays, reading values from the raw buffers
    (numpy views) and honouring array offsets (sliced arrays);
  * a C Data Interface walker (ctypes over ArrowArray/ArrowSchema) that is used
    automatically for arrays pyarrow cannot wrap as Python objects (pyarrow 26
    has no Python class for month_interval / day_time_interval and raises
    KeyError when asked to wrap one), and for everything with --cdata.
--check runs both and fails if they disagree.
"""
import ctypes
import json
import sys

import numpy as np
import pyarrow as pa

ARROW_FILE_MAGIC = b"ARROW1"


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------

def read_batches(path):
    with open(path, "rb") as f:
        head = f.read(6)
    if head == ARROW_FILE_MAGIC:
        reader = pa.ipc.open_file(path)
        return reader.schema, [reader.get_batch(i) for i in range(reader.num_record_batches)]
    reader = pa.ipc.open_stream(path)
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
    return reader.schema, batches


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

class Unwrappable(Exception):
    """pyarrow cannot wrap (a child of) this array as a Python object."""


def _wrap(fn):
    try:
        return fn()
    except KeyError as e:  # pyarrow.lib.get_array_class_from_type
        raise Unwrappable(str(e))


def _bits(buf, offset, length):
    """Validity / boolean bitmap -> list of bools (None buffer -> all True)."""
    if buf is None:
        return [True] * length
    if length == 0:
        return []
    raw = np.frombuffer(buf, dtype=np.uint8)
    need = (offset + length + 7) // 8
    if len(raw) < need:
        raw = np.concatenate([raw, np.zeros(need - len(raw), dtype=np.uint8)])
    start = offset // 8
    stop = (offset + length + 7) // 8 + 1
    bits = np.unpackbits(raw[start:stop], bitorder="little")
    sh = offset % 8
    return [bool(b) for b in bits[sh:sh + length]]


def _nums(buf, dtype, offset, length):
    if length == 0:
        return np.zeros(0, dtype=dtype)
    have = np.frombuffer(buf, dtype=dtype) if buf is not None else np.zeros(0, dtype=dtype)
    out = have[offset:offset + length]
    if len(out) < length:  # short/absent buffer (e.g. all-null column): pad with zeros
        out = np.concatenate([out, np.zeros(length - len(out), dtype=dtype)])
    return out


def _mask(values, valid):
    return [v if ok else None for v, ok in zip(values, valid)]


_INT_DTYPES = {
    pa.int8(): "<i1", pa.int16(): "<i2", pa.int32(): "<i4", pa.int64(): "<i8",
    pa.uint8(): "<u1", pa.uint16(): "<u2", pa.uint32(): "<u4", pa.uint64(): "<u8",
    pa.float16(): "<u2", pa.float32(): "<u4", pa.float64(): "<u8",
    pa.date32(): "<i4", pa.date64(): "<i8",
}

_MDN = np.dtype([("m", "<i4"), ("d", "<i4"), ("n", "<i8")])


def _fixed_dtype(t):
    if t in _INT_DTYPES:
        return _INT_DTYPES[t]
    if pa.types.is_time32(t):
        return "<i4"
    if pa.types.is_time64(t) or pa.types.is_timestamp(t) or pa.types.is_duration(t):
        return "<i8"
    return None


def _run_index(run_ends, logical):
    """First physical run j with run_ends[j] > logical."""
    return int(np.searchsorted(run_ends, logical, side="right"))


# --------------------------------------------------------------------------
# implementation 1: pyarrow Arrays + raw buffers
# --------------------------------------------------------------------------

def canon_pa(arr):
    """Canonical values (list, one per row) of a pyarrow Array."""
    t = arr.type
    n = len(arr)
    off = arr.offset

    if isinstance(arr, pa.ExtensionArray):
        return canon(arr.storage)
    if pa.types.is_null(t):
        return [None] * n

    if pa.types.is_dictionary(t):
        idx = canon(arr.indices)
        dvals = canon(_wrap(lambda: arr.dictionary))
        return [None if i is None else dvals[i] for i in idx]

    if pa.types.is_run_end_encoded(t):
        run_ends = np.asarray(canon(arr.run_ends), dtype=np.int64)
        vals = canon(_wrap(lambda: arr.values))
        return [vals[_run_index(run_ends, off + i)] for i in range(n)]

    if pa.types.is_union(t):
        bufs = arr.buffers()
        codes = _nums(bufs[1], "<i1", off, n).tolist()
        pos = {c: k for k, c in enumerate(t.type_codes)}
        children = [canon(_wrap(lambda k=k: arr.field(k))) for k in range(t.num_fields)]
        if t.mode == "sparse":
            # UnionArray.field() of a sparse union is already sliced to the parent.
            return [[c, children[pos[c]][i]] for i, c in enumerate(codes)]
        offsets = _nums(bufs[2], "<i4", off, n).tolist()
        return [[c, children[pos[c]][o]] for c, o in zip(codes, offsets)]

    bufs = arr.buffers()
    valid = _bits(bufs[0], off, n)

    if pa.types.is_boolean(t):
        return _mask(_bits(bufs[1], off, n), valid)

    dt = _fixed_dtype(t)
    if dt is not None:
        return _mask(_nums(bufs[1], dt, off, n).tolist(), valid)

    if pa.types.is_decimal(t):
        w = t.bit_width // 8
        raw = bytes(bufs[1]) if n else b""
        return _mask([str(int.from_bytes(raw[(off + i) * w:(off + i + 1) * w], "little", signed=True))
                      for i in range(n)], valid)

    if t == pa.month_day_nano_interval():
        v = _nums(bufs[1], _MDN, off, n)
        return _mask([[int(x["m"]), int(x["d"]), int(x["n"])] for x in v], valid)

    if pa.types.is_fixed_size_binary(t):
        w = t.byte_width
        raw = bytes(bufs[1]) if n else b""
        return _mask([raw[(off + i) * w:(off + i + 1) * w].hex() for i in range(n)], valid)

    if (pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t)
            or pa.types.is_large_string(t)):
        odt = "<i8" if (pa.types.is_large_binary(t) or pa.types.is_large_string(t)) else "<i4"
        if n == 0:
            return []
        o = _nums(bufs[1], odt, off, n + 1).tolist()
        data = bytes(bufs[2]) if bufs[2] is not None else b""
        return _mask([data[o[i]:o[i + 1]].hex() for i in range(n)], valid)

    if pa.types.is_binary_view(t) or pa.types.is_string_view(t):
        if n == 0:
            return []
        views = bytes(bufs[1])[off * 16:(off + n) * 16]
        data = [bytes(b) if b is not None else b"" for b in bufs[2:]]
        out = []
        for i in range(n):
            out.append(_view_bytes(views[i * 16:(i + 1) * 16], lambda k: data[k]).hex())
        return _mask(out, valid)

    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        if n == 0:
            return []
        odt = "<i8" if pa.types.is_large_list(t) else "<i4"
        o = _nums(bufs[1], odt, off, n + 1).tolist()
        child = canon(_wrap(lambda: arr.values))  # raw child, parent offset not applied
        return _mask([child[o[i]:o[i + 1]] for i in range(n)], valid)

    if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        if n == 0:
            return []
        odt = "<i8" if pa.types.is_large_list_view(t) else "<i4"
        o = _nums(bufs[1], odt, off, n).tolist()
        s = _nums(bufs[2], odt, off, n).tolist()
        child = canon(_wrap(lambda: arr.values))
        return _mask([child[o[i]:o[i] + s[i]] if valid[i] else None for i in range(n)], valid)

    if pa.types.is_fixed_size_list(t):
        w = t.list_size
        child = canon(_wrap(lambda: arr.values))  # raw child
        return _mask([child[(off + i) * w:(off + i + 1) * w] for i in range(n)], valid)

    if pa.types.is_struct(t):
        # StructArray.field() is already sliced to the parent's offset/length.
        cols = [canon(_wrap(lambda k=k: arr.field(k))) for k in range(t.num_fields)]
        return _mask([[c[i] for c in cols] for i in range(n)], valid)

    raise TypeError("canonical_dump: unsupported type %s" % t)


def _view_bytes(view, data_of):
    ln = int.from_bytes(view[0:4], "little", signed=True)
    if ln <= 12:
        return view[4:4 + ln]
    k = int.from_bytes(view[8:12], "little", signed=True)
    o = int.from_bytes(view[12:16], "little", signed=True)
    return data_of(k)[o:o + ln]


def canon(arr):
    try:
        return canon_pa(arr)
    except Unwrappable:
        return canon_c_array(arr)


# --------------------------------------------------------------------------
# implementation 2: Arrow C Data Interface (ctypes)
# --------------------------------------------------------------------------

class ArrowSchema(ctypes.Structure):
    pass


ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_void_p),
    ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowSchema))),
    ("dictionary", ctypes.POINTER(ArrowSchema)),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowSchema))),
    ("private_data", ctypes.c_void_p),
]


class ArrowArray(ctypes.Structure):
    pass


ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowArray))),
    ("dictionary", ctypes.POINTER(ArrowArray)),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowArray))),
    ("private_data", ctypes.c_void_p),
]

_C_FIXED = {
    "c": ("<i1", 1), "C": ("<u1", 1), "s": ("<i2", 2), "S": ("<u2", 2),
    "i": ("<i4", 4), "I": ("<u4", 4), "l": ("<i8", 8), "L": ("<u8", 8),
    "e": ("<u2", 2), "f": ("<u4", 4), "g": ("<u8", 8),
    "tdD": ("<i4", 4), "tdm": ("<i8", 8), "tts": ("<i4", 4), "ttm": ("<i4", 4),
    "ttu": ("<i8", 8), "ttn": ("<i8", 8), "tiM": ("<i4", 4),
    "tDs": ("<i8", 8), "tDm": ("<i8", 8), "tDu": ("<i8", 8), "tDn": ("<i8", 8),
}


class CNode:
    def __init__(self, a, s):
        self.a, self.s = a, s
        self.fmt = s.format.decode()
        self.off = a.offset
        self.n = a.length
        self.children = [CNode(a.children[i].contents, s.children[i].contents)
                         for i in range(a.n_children)]
        self.dictionary = CNode(a.dictionary.contents, s.dictionary.contents) if s.dictionary else None

    def buf(self, i):
        return self.a.buffers[i]

    def read(self, bi, start, size):
        p = self.buf(bi)
        return ctypes.string_at(p + start, size) if size else b""

    def valid(self, j):
        p = self.buf(0)
        if not p:
            return True
        k = self.off + j
        return bool(ctypes.string_at(p + k // 8, 1)[0] >> (k % 8) & 1)

    def num(self, bi, dtype, size, k):
        return np.frombuffer(self.read(bi, k * size, size), dtype=dtype)[0].item()

    def value(self, j):
        """Canonical value of logical row j (0 <= j < n)."""
        f = self.fmt
        k = self.off + j
        if self.dictionary is not None:
            if not self.valid(j):
                return None
            idt, isz = _C_FIXED[f]
            return self.dictionary.value(self.num(1, idt, isz, k))
        if f == "n":
            return None
        if f == "+r":
            re, vals = self.children
            lo, hi = 0, re.n
            while lo < hi:  # first run end > k
                mid = (lo + hi) // 2
                if re.value(mid) > k:
                    hi = mid
                else:
                    lo = mid + 1
            return vals.value(lo)
        if f.startswith("+us:") or f.startswith("+ud:"):
            codes = [int(x) for x in f[4:].split(",")] if len(f) > 4 else []
            c = self.num(0, "<i1", 1, k)
            ch = self.children[codes.index(c)]
            if f[2] == "s":
                return [c, ch.value(k)]
            return [c, ch.value(self.num(1, "<i4", 4, k))]
        if not self.valid(j):
            return None
        if f == "b":
            return bool(self.read(1, k // 8, 1)[0] >> (k % 8) & 1)
        if f in _C_FIXED:
            dt, sz = _C_FIXED[f]
            return self.num(1, dt, sz, k)
        if f == "tiD":
            v = np.frombuffer(self.read(1, k * 8, 8), dtype="<i4")
            return [int(v[0]), int(v[1])]
        if f == "tin":
            v = np.frombuffer(self.read(1, k * 16, 16), dtype=_MDN)[0]
            return [int(v["m"]), int(v["d"]), int(v["n"])]
        if f[:2] in ("ts",):  # timestamp any unit / tz: "tsu:UTC"
            return self.num(1, "<i8", 8, k)
        if f.startswith("d:"):
            parts = f[2:].split(",")
            w = int(parts[2]) // 8 if len(parts) > 2 else 16
            return str(int.from_bytes(self.read(1, k * w, w), "little", signed=True))
        if f.startswith("w:"):
            w = int(f[2:])
            return self.read(1, k * w, w).hex()
        if f in ("z", "u", "Z", "U"):
            dt, sz = ("<i4", 4) if f in ("z", "u") else ("<i8", 8)
            a = self.num(1, dt, sz, k)
            b = self.num(1, dt, sz, k + 1)
            return self.read(2, a, b - a).hex()
        if f in ("vz", "vu"):
            view = self.read(1, k * 16, 16)
            ln = int.from_bytes(view[0:4], "little", signed=True)
            if ln <= 12:
                return view[4:4 + ln].hex()
            bi = int.from_bytes(view[8:12], "little", signed=True)
            o = int.from_bytes(view[12:16], "little", signed=True)
            return self.read(2 + bi, o, ln).hex()
        if f in ("+l", "+L", "+m"):
            dt, sz = ("<i8", 8) if f == "+L" else ("<i4", 4)
            a = self.num(1, dt, sz, k)
            b = self.num(1, dt, sz, k + 1)
            ch = self.children[0]
            return [ch.value(x) for x in range(a, b)]
        if f in ("+vl", "+vL"):
            dt, sz = ("<i8", 8) if f == "+vL" else ("<i4", 4)
            a = self.num(1, dt, sz, k)
            s = self.num(2, dt, sz, k)
            ch = self.children[0]
            return [ch.value(x) for x in range(a, a + s)]
        if f.startswith("+w:"):
            w = int(f[3:])
            ch = self.children[0]
            return [ch.value(x) for x in range(k * w, (k + 1) * w)]
        if f == "+s":
            return [ch.value(k) for ch in self.children]
        raise TypeError("canonical_dump: unsupported C format %r" % f)

    def values(self):
        return [self.value(j) for j in range(self.n)]


def _with_c_export(obj, fn):
    a, s = ArrowArray(), ArrowSchema()
    obj._export_to_c(ctypes.addressof(a), ctypes.addressof(s))
    try:
        return fn(CNode(a, s))
    finally:
        if a.release:
            a.release(ctypes.byref(a))
        if s.release:
            s.release(ctypes.byref(s))


def canon_c_array(arr):
    return _with_c_export(arr, lambda node: node.values())


def canon_c_batch(batch):
    """All columns of a RecordBatch via the C interface (exported as a struct)."""
    return _with_c_export(batch, lambda node: [ch.values() for ch in node.children])


# --------------------------------------------------------------------------

def batch_columns(batch, mode):
    if mode == "cdata":
        return canon_c_batch(batch)
    cols = []
    for i in range(batch.num_columns):
        try:
            col = _wrap(lambda: batch.column(i))
        except Unwrappable:
            cols.append(canon_c_batch(batch)[i])
            continue
        cols.append(canon(col))
    return cols


def dump_obj(path, mode="pa"):
    _, batches = read_batches(path)
    return {"batches": [{"rows": b.num_rows, "columns": batch_columns(b, mode)} for b in batches]}


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def main(argv):
    mode = "pa"
    args = [a for a in argv[1:]]
    if args and args[0] in ("--cdata", "--check"):
        mode = args.pop(0)[2:]
    if len(args) != 1:
        sys.stderr.write("usage: canonical_dump.py [--cdata|--check] FILE\n")
        return 2
    if mode == "check":
        a = dumps(dump_obj(args[0], "pa"))
        b = dumps(dump_obj(args[0], "cdata"))
        if a != b:
            sys.stderr.write("canonical_dump: pyarrow and C-data walkers disagree on %s\n" % args[0])
            return 1
        sys.stdout.write(a + "\n")
        return 0
    sys.stdout.write(dumps(dump_obj(args[0], mode)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
