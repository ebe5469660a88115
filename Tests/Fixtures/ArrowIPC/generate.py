#!/usr/bin/env python3
"""Deterministic generator of Arrow IPC conformance fixtures (pyarrow side).

Writes into Tests/Fixtures/ArrowIPC/generated/, for every case NAME:
    NAME.arrows  IPC stream  (pa.ipc.new_stream)
    NAME.arrow   IPC file    (pa.ipc.new_file)      -- omitted for stream-only cases
plus VERSIONS.txt. Every case uses fixed seeds, so re-running produces
byte-identical files for a given pyarrow version.

    .venv/bin/python Tests/Fixtures/ArrowIPC/generate.py
"""
import decimal
import os
import random
import shutil
import sys

import numpy as np
import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "generated")

MAX_FILE = 200 * 1024
MAX_TOTAL = 5 * 1024 * 1024

decimal.getcontext().prec = 120


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def rngs(seed):
    return np.random.default_rng(seed), random.Random(seed)


def null_mask(rng, n, p=0.2):
    """Boolean mask (True = null) with at least one null and one valid slot."""
    m = rng.random(n) < p
    if n >= 2:
        m[0] = False
        m[1] = True
    return m


def with_nulls(values, mask):
    return [None if m else v for v, m in zip(values, mask)]


ALPHABET = "abcxyzAZ09 _-é€ß漢字😀"


def rand_str(r, maxlen=30):
    """Mix of empty, short (<=12 bytes) and long (>12 bytes) strings, non-ASCII included."""
    k = r.random()
    if k < 0.1:
        return ""
    ln = r.randint(1, 6) if k < 0.55 else r.randint(8, maxlen)
    return "".join(r.choice(ALPHABET) for _ in range(ln))


def rand_bytes(r, maxlen=30):
    k = r.random()
    if k < 0.1:
        return b""
    ln = r.randint(1, 12) if k < 0.55 else r.randint(13, maxlen)
    return bytes(r.randrange(256) for _ in range(ln))


def batches_from_columns(names, cols, sizes, schema=None):
    """Split full-length column arrays into record batches of the given sizes."""
    out = []
    start = 0
    for sz in sizes:
        arrays = [c.slice(start, sz) for c in cols]
        if schema is None:
            out.append(pa.RecordBatch.from_arrays(arrays, names=names))
        else:
            out.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
        start += sz
    return out


# ---------------------------------------------------------------------------
# cases: each returns (schema, [batches], stream_only, write_options_or_None)
# ---------------------------------------------------------------------------

def case_primitive():
    rng, r = rngs(1)
    n = 250
    cols, names = [], []

    def add(name, arr):
        names.append(name)
        cols.append(arr)

    add("bool", pa.array(with_nulls([bool(x) for x in rng.integers(0, 2, n)], null_mask(rng, n)), pa.bool_()))
    for bits, signed in [(8, True), (16, True), (32, True), (64, True),
                         (8, False), (16, False), (32, False), (64, False)]:
        dt = np.dtype(("i" if signed else "u") + str(bits // 8))
        info = np.iinfo(dt)
        v = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        v[2], v[3], v[4] = info.min, info.max, 0
        t = getattr(pa, ("int" if signed else "uint") + str(bits))()
        m = null_mask(rng, n)
        m[2:5] = False
        add(str(t), pa.array(v, type=t, mask=m))
    specials = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1.0, -1.5]
    for t, dt in [(pa.float16(), np.float16), (pa.float32(), np.float32), (pa.float64(), np.float64)]:
        v = (rng.standard_normal(n) * 1000).astype(dt)
        v[2:2 + len(specials)] = np.array(specials, dtype=dt)
        if dt is np.float64:
            v[10] = 5e-324            # subnormal
            v[11] = 1.7976931348623157e308
        m = null_mask(rng, n)
        m[2:12] = False   # keep the special values valid
        add(str(t), pa.array(v, type=t, mask=m))
    return None, batches_from_columns(names, cols, [100, 150])


def case_decimal():
    rng, r = rngs(2)
    n = 200
    specs = [
        ("d32_9_2", pa.decimal32(9, 2)), ("d32_4_4", pa.decimal32(4, 4)), ("d32_7_0", pa.decimal32(7, 0)),
        ("d64_18_6", pa.decimal64(18, 6)), ("d64_12_0", pa.decimal64(12, 0)),
        ("d128_38_10", pa.decimal128(38, 10)), ("d128_5_2", pa.decimal128(5, 2)), ("d128_20_0", pa.decimal128(20, 0)),
        ("d256_76_20", pa.decimal256(76, 20)), ("d256_40_0", pa.decimal256(40, 0)), ("d256_50_49", pa.decimal256(50, 49)),
    ]
    names, cols = [], []
    for name, t in specs:
        lim = 10 ** t.precision - 1
        vals = []
        for i in range(n):
            if i == 2:
                u = lim
            elif i == 3:
                u = -lim
            elif i == 4:
                u = 0
            elif i == 5:
                u = -1
            else:
                digits = r.randint(1, t.precision)
                u = r.randint(-(10 ** digits - 1), 10 ** digits - 1)
            vals.append(decimal.Decimal(u).scaleb(-t.scale))
        names.append(name)
        cols.append(pa.array(with_nulls(vals, null_mask(rng, n)), t))
    return None, batches_from_columns(names, cols, [80, 120])


def case_temporal():
    rng, r = rngs(3)
    n = 200
    names, cols = [], []

    def add(name, t, lo, hi, dtype="i8"):
        v = rng.integers(lo, hi, n, dtype=dtype)
        validity = pa.array(~null_mask(rng, n)).buffers()[1]
        names.append(name)
        cols.append(pa.Array.from_buffers(t, n, [validity, pa.py_buffer(v.astype("<" + dtype).tobytes())]))

    add("date32", pa.date32(), -800000, 800000, "i4")
    days = rng.integers(-800000, 800000, n)
    names.append("date64")
    cols.append(pa.array(days * 86400000, pa.int64(), mask=null_mask(rng, n)).cast(pa.date64()))
    add("time32_s", pa.time32("s"), 0, 86400, "i4")
    add("time32_ms", pa.time32("ms"), 0, 86400000, "i4")
    add("time64_us", pa.time64("us"), 0, 86400000000, "i8")
    add("time64_ns", pa.time64("ns"), 0, 86400000000000, "i8")
    for unit in ["s", "ms", "us", "ns"]:
        for tz in [None, "UTC", "America/New_York", "+05:30"]:
            tag = "naive" if tz is None else tz.replace("/", "_").replace("+", "p").replace(":", "")
            add("ts_%s_%s" % (unit, tag), pa.timestamp(unit, tz), -(2 ** 62), 2 ** 62)
    for unit in ["s", "ms", "us", "ns"]:
        add("duration_" + unit, pa.duration(unit), -(2 ** 62), 2 ** 62)
    mdn = [pa.MonthDayNano([int(a), int(b), int(c)]) for a, b, c in
           zip(rng.integers(-1000, 1000, n), rng.integers(-40000, 40000, n),
               rng.integers(-(2 ** 62), 2 ** 62, n))]
    names.append("month_day_nano")
    cols.append(pa.array(with_nulls(mdn, null_mask(rng, n)), pa.month_day_nano_interval()))
    # month_interval (YEAR_MONTH) and day_time_interval: pyarrow has no Python
    # constructor for these types (and cannot wrap such arrays) -- see README.
    return None, batches_from_columns(names, cols, [90, 110])


def case_binary():
    rng, r = rngs(4)
    n = 200
    strs = [rand_str(r) for _ in range(n)]
    strs[2:6] = ["", "twelve bytes", "thirteen byte", "é€😀 long non-ascii value"]
    byts = [rand_bytes(r) for _ in range(n)]
    byts[2:5] = [b"", b"\x00" * 12, b"\xff" * 13]
    fsb = [bytes(r.randrange(256) for _ in range(5)) for _ in range(n)]
    names = ["utf8", "large_utf8", "binary", "large_binary", "fixed_size_binary_5", "utf8_view", "binary_view"]
    types = [pa.utf8(), pa.large_utf8(), pa.binary(), pa.large_binary(), pa.binary(5), pa.string_view(), pa.binary_view()]
    data = [strs, strs, byts, byts, fsb, strs, byts]
    cols = [pa.array(with_nulls(d, null_mask(rng, n)), t) for d, t in zip(data, types)]
    return None, batches_from_columns(names, cols, [70, 130])


def case_nested():
    rng, r = rngs(5)
    n = 150

    def maybe(x, p=0.15):
        return None if r.random() < p else x

    list_i32 = [maybe([maybe(r.randint(-1000, 1000)) for _ in range(r.randint(0, 5))]) for _ in range(n)]
    llist_utf8 = [maybe([maybe(rand_str(r)) for _ in range(r.randint(0, 4))]) for _ in range(n)]
    fsl = [maybe([maybe(r.uniform(-1e6, 1e6)) for _ in range(3)]) for _ in range(n)]
    structs = [maybe({"a": maybe(r.randint(-2 ** 31, 2 ** 31 - 1)), "b": maybe(rand_str(r)),
                      "c": maybe({"d": maybe(r.uniform(-1, 1)),
                                  "e": maybe([maybe(r.randint(-32768, 32767)) for _ in range(r.randint(0, 3))])})})
               for _ in range(n)]
    maps = [maybe([("k%d_%s" % (j, rand_str(r, 8)), maybe(r.randint(-2 ** 63, 2 ** 63 - 1)))
                   for j in range(r.randint(0, 4))]) for _ in range(n)]

    # list_view with out-of-order and overlapping views into a shared child
    child = pa.array([maybe(r.randint(-100, 100)) for _ in range(400)], pa.int32())
    offs = [r.randint(0, 390) for _ in range(n)]
    sizes = [r.randint(0, 10) for _ in range(n)]
    lv_mask = pa.array(null_mask(rng, n))
    list_view = pa.ListViewArray.from_arrays(pa.array(offs, pa.int32()), pa.array(sizes, pa.int32()),
                                             child, mask=lv_mask)
    lchild = pa.array([maybe(rand_str(r)) for _ in range(300)], pa.utf8())
    loffs = [r.randint(0, 290) for _ in range(n)]
    lsizes = [r.randint(0, 10) for _ in range(n)]
    large_list_view = pa.LargeListViewArray.from_arrays(pa.array(loffs, pa.int64()), pa.array(lsizes, pa.int64()),
                                                        lchild, mask=pa.array(null_mask(rng, n)))

    struct_t = pa.struct([("a", pa.int32()), ("b", pa.utf8()),
                          ("c", pa.struct([("d", pa.float64()), ("e", pa.list_(pa.int16()))]))])
    names = ["list_int32", "large_list_utf8", "list_view_int32", "large_list_view_utf8",
             "fixed_size_list_f64_3", "struct", "map_utf8_int64"]
    cols = [pa.array(list_i32, pa.list_(pa.int32())),
            pa.array(llist_utf8, pa.large_list(pa.utf8())),
            list_view, large_list_view,
            pa.array(fsl, pa.list_(pa.float64(), 3)),
            pa.array(structs, struct_t),
            pa.array(maps, pa.map_(pa.utf8(), pa.int64()))]
    return None, batches_from_columns(names, cols, [60, 90])


def case_union():
    rng, r = rngs(6)
    n = 150
    codes = [5, 10]
    tids = [r.choice(codes) for _ in range(n)]
    types = pa.array(tids, pa.int8())
    a = pa.array([None if r.random() < 0.2 else r.randint(-10 ** 6, 10 ** 6) for _ in range(n)], pa.int32())
    b = pa.array([None if r.random() < 0.2 else rand_str(r) for _ in range(n)], pa.utf8())
    sparse = pa.UnionArray.from_sparse(types, [a, b], ["a", "b"], codes)

    codes3 = [7, 5, 10]   # non-monotonic type codes
    tids3 = [r.choice(codes3) for _ in range(n)]
    counts = {c: 0 for c in codes3}
    offsets = []
    for t in tids3:
        offsets.append(counts[t])
        counts[t] += 1
    ca = pa.array([None if r.random() < 0.2 else r.randint(-2 ** 63, 2 ** 63 - 1) for _ in range(counts[7])], pa.int64())
    cb = pa.array([None if r.random() < 0.2 else rand_str(r) for _ in range(counts[5])], pa.utf8())
    cc = pa.array([None if r.random() < 0.2 else [r.randint(0, 9) for _ in range(r.randint(0, 3))]
                   for _ in range(counts[10])], pa.list_(pa.int8()))
    dense = pa.UnionArray.from_dense(pa.array(tids3, pa.int8()), pa.array(offsets, pa.int32()),
                                     [ca, cb, cc], ["x", "y", "z"], codes3)
    return None, batches_from_columns(["sparse_5_10", "dense_7_5_10"], [sparse, dense], [60, 90])


def _dict(indices, values, index_type, ordered=False):
    return pa.DictionaryArray.from_arrays(pa.array(indices, index_type), values, ordered=ordered)


def case_dictionary():
    rng, r = rngs(7)
    n = 200
    words = pa.array(["alpha", "beta", "", "gamma ünïcødé long value", "δ", None, "epsilon"], pa.utf8())
    words2 = pa.array(["red", "green", "blue", "a rather long colour name"], pa.utf8())
    lists = pa.array([[1, 2], [], None, [None, 3, 4]], pa.list_(pa.int32()))

    def idx(k):
        return [None if r.random() < 0.15 else r.randrange(k) for _ in range(n)]

    d_i8 = _dict(idx(len(words)), words, pa.int8())
    d_i16_ord = _dict(idx(len(words2)), words2, pa.int16(), ordered=True)
    d_i32 = _dict(idx(len(words)), words, pa.int32())
    d_u32 = _dict(idx(len(words2)), words2, pa.uint32())
    d_list = _dict(idx(len(lists)), lists, pa.int32())

    # nested dictionary: dictionary<int16, list<dictionary<int8, utf8>>>
    inner = _dict([0, 1, None, 2, 0, 3, 1], pa.array(["x", "yy", "zzz zzz zzz zz", "ü"]), pa.int8())
    inner_lists = pa.ListArray.from_arrays(pa.array([0, 2, 2, 5, 7], pa.int32()), inner)
    d_nested = _dict(idx(4), inner_lists, pa.int16())
    # struct containing a dictionary-encoded field, dictionary-encoded itself
    struct_vals = pa.StructArray.from_arrays(
        [_dict([1, 0, 1], pa.array(["left", "right"]), pa.int32()), pa.array([10, 20, None], pa.int64())],
        ["side", "w"])
    d_struct = _dict(idx(3), struct_vals, pa.int32())

    names = ["dict_i8_utf8", "dict_i16_utf8_ordered", "dict_i32_utf8", "dict_u32_utf8",
             "dict_i32_list_i32", "dict_i16_list_dict_i8_utf8", "dict_i32_struct_with_dict"]
    cols = [d_i8, d_i16_ord, d_i32, d_u32, d_list, d_nested, d_struct]
    return None, batches_from_columns(names, cols, [80, 120])


def case_dictionary_delta():
    rng, r = rngs(8)
    full = ["a", "bb", "ccc", "a longer dictionary entry", "é", "f", "gg", "hhh"]
    full_i = [10, 20, 30, 40, 50, 60, 70, 80]
    batches = []
    for k, ln in [(3, 40), (5, 50), (8, 60)]:   # dictionary grows => deltas
        d1 = _dict([None if r.random() < 0.1 else r.randrange(k) for _ in range(ln)], pa.array(full[:k]), pa.int32())
        d2 = _dict([None if r.random() < 0.1 else r.randrange(k) for _ in range(ln)],
                   pa.array(full_i[:k], pa.int64()), pa.int16())
        plain = pa.array([r.randint(0, 99) for _ in range(ln)], pa.int32())
        batches.append(pa.RecordBatch.from_arrays([d1, d2, plain], ["dict_utf8", "dict_int64", "plain"]))
    return None, batches, True, pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)


def case_dictionary_replacement():
    rng, r = rngs(9)
    dicts = [["a", "b", "c"], ["x", "y"], ["completely", "different", "dictionary values here", ""]]
    batches = []
    for words in dicts:
        ln = 30
        d = _dict([None if r.random() < 0.1 else r.randrange(len(words)) for _ in range(ln)],
                  pa.array(words), pa.int32())
        batches.append(pa.RecordBatch.from_arrays([d, pa.array(range(ln), pa.int64())], ["dict_utf8", "row"]))
    return None, batches, True, None


def case_run_end_encoded():
    rng, r = rngs(10)

    def ree(n_logical, rtype, vals_fn, vtype):
        ends, vals, pos = [], [], 0
        while pos < n_logical:
            pos = min(n_logical, pos + r.randint(1, 12))
            ends.append(pos)
            vals.append(None if r.random() < 0.2 else vals_fn())
        return pa.RunEndEncodedArray.from_arrays(pa.array(ends, rtype), pa.array(vals, vtype),
                                                 type=pa.run_end_encoded(rtype, vtype))

    batches = []
    for ln in (120, 80):
        cols = [ree(ln, pa.int32(), lambda: rand_str(r), pa.utf8()),
                ree(ln, pa.int16(), lambda: r.uniform(-1e3, 1e3), pa.float64()),
                ree(ln, pa.int64(), lambda: r.randint(-2 ** 63, 2 ** 63 - 1), pa.int64())]
        batches.append(pa.RecordBatch.from_arrays(cols, ["ree_i32_utf8", "ree_i16_f64", "ree_i64_i64"]))
    return None, batches


class VfUuidType(pa.ExtensionType):
    def __init__(self):
        super().__init__(pa.binary(16), "vf.uuid")

    def __arrow_ext_serialize__(self):
        return b"vf-uuid;v=1;layout=rfc4122"

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()


def case_extension():
    rng, r = rngs(11)
    try:
        pa.register_extension_type(VfUuidType())
    except pa.ArrowKeyError:
        pass
    t = VfUuidType()
    n = 100
    raw = [None if r.random() < 0.2 else bytes(r.randrange(256) for _ in range(16)) for _ in range(n)]
    uuids = pa.ExtensionArray.from_storage(t, pa.array(raw, pa.binary(16)))
    inner = pa.ExtensionArray.from_storage(
        t, pa.array([None if r.random() < 0.2 else bytes(r.randrange(256) for _ in range(16)) for _ in range(120)],
                    pa.binary(16)))
    offs, pos = [0], 0
    for _ in range(n):
        pos = min(120, pos + r.randint(0, 2))
        offs.append(pos)
    lists = pa.ListArray.from_arrays(pa.array(offs, pa.int32()), inner,
                                     mask=pa.array([r.random() < 0.1 for _ in range(n)]))
    return None, batches_from_columns(["uuid", "list_uuid"], [uuids, lists], [40, 60])


def case_metadata():
    rng, r = rngs(12)
    n = 60
    item = pa.field("item", pa.int32(), metadata={"item.meta": "on list child"})
    fields = [
        pa.field("id", pa.int64(), nullable=False, metadata={"unit": "count", "描述": "标识符 ✓"}),
        pa.field("name", pa.utf8(), metadata={"empty": "", "ключ": "значение"}),
        pa.field("tags", pa.list_(item), metadata={"kind": "list"}),
        pa.field("s", pa.struct([pa.field("x", pa.float64(), metadata={"child": "x ü"}),
                                 pa.field("y", pa.bool_())]), metadata={"kind": "struct"}),
        pa.field("plain", pa.int8()),
    ]
    schema = pa.schema(fields, metadata={"producer": "ValkeyFlight fixtures", "ünïcødé": "値 ✓ 😀",
                                         "empty": "", "json": '{"a":[1,2]}'})
    cols = [pa.array(range(n), pa.int64()),
            pa.array([None if r.random() < 0.2 else rand_str(r) for _ in range(n)], pa.utf8()),
            pa.array([None if r.random() < 0.2 else [r.randint(0, 9) for _ in range(r.randint(0, 3))]
                      for _ in range(n)], pa.list_(item)),
            pa.array([None if r.random() < 0.2 else {"x": r.random(), "y": r.random() < 0.5} for _ in range(n)],
                     schema.field("s").type),
            pa.array([r.randint(-128, 127) for _ in range(n)], pa.int8())]
    return schema, batches_from_columns(None, cols, [25, 35], schema=schema)


def case_null():
    n_sizes = [10, 25]
    types = [("null", pa.null()), ("all_null_int32", pa.int32()), ("all_null_utf8", pa.utf8()),
             ("all_null_bool", pa.bool_()), ("all_null_f64", pa.float64()),
             ("all_null_list_i64", pa.list_(pa.int64())), ("all_null_struct", pa.struct([("a", pa.int32())])),
             ("all_null_dict", pa.dictionary(pa.int32(), pa.utf8())), ("all_null_binary_view", pa.binary_view()),
             ("all_null_decimal128", pa.decimal128(10, 2)), ("all_null_fsb4", pa.binary(4))]
    schema = pa.schema([pa.field(nm, t) for nm, t in types])
    batches = [pa.RecordBatch.from_arrays([pa.nulls(sz, t) for _, t in types], schema=schema) for sz in n_sizes]
    return schema, batches


def case_sliced():
    rng, r = rngs(13)
    n = 120
    base = {
        "bool": pa.array([None if r.random() < 0.2 else r.random() < 0.5 for _ in range(n)], pa.bool_()),
        "int32": pa.array([None if r.random() < 0.2 else r.randint(-1000, 1000) for _ in range(n)], pa.int32()),
        "utf8": pa.array([None if r.random() < 0.2 else rand_str(r) for _ in range(n)], pa.utf8()),
        "list_i16": pa.array([None if r.random() < 0.2 else [r.randint(-9, 9) for _ in range(r.randint(0, 4))]
                              for _ in range(n)], pa.list_(pa.int16())),
        "struct": pa.array([None if r.random() < 0.2 else {"a": r.randint(0, 9), "b": rand_str(r)}
                            for _ in range(n)], pa.struct([("a", pa.int8()), ("b", pa.utf8())])),
        "dict": _dict([None if r.random() < 0.2 else r.randrange(4) for _ in range(n)],
                      pa.array(["p", "q", "rrrrrrrrrrrrrrrr", ""]), pa.int32()),
        "utf8_view": pa.array([None if r.random() < 0.2 else rand_str(r) for _ in range(n)], pa.string_view()),
        "fsl_i32_2": pa.array([None if r.random() < 0.2 else [r.randint(0, 9), None] for _ in range(n)],
                              pa.list_(pa.int32(), 2)),
        "decimal128": pa.array([None if r.random() < 0.2 else decimal.Decimal(r.randint(-10 ** 9, 10 ** 9)).scaleb(-3)
                                for _ in range(n)], pa.decimal128(12, 3)),
        "sparse_union": pa.UnionArray.from_sparse(
            pa.array([r.choice([5, 10]) for _ in range(n)], pa.int8()),
            [pa.array([r.randint(0, 99) for _ in range(n)], pa.int32()),
             pa.array([rand_str(r) for _ in range(n)], pa.utf8())], ["a", "b"], [5, 10]),
    }
    names = list(base)
    # two batches built from slices with non-zero offsets
    b1 = pa.RecordBatch.from_arrays([base[k].slice(3, 50) for k in names], names)
    b2 = pa.RecordBatch.from_arrays([base[k].slice(61, 37) for k in names], names)
    # and a slice of a slice
    b3 = pa.RecordBatch.from_arrays([base[k].slice(10, 40).slice(7, 21) for k in names], names)
    return None, [b1, b2, b3]


def case_empty_batches():
    rng, r = rngs(14)
    schema = pa.schema([("i", pa.int32()), ("s", pa.utf8()), ("l", pa.list_(pa.int64())),
                        ("d", pa.dictionary(pa.int8(), pa.utf8())), ("v", pa.binary_view())])
    dictionary = pa.array(["one", "two", "three"])

    def batch(n):
        return pa.RecordBatch.from_arrays([
            pa.array([None if r.random() < 0.2 else r.randint(0, 99) for _ in range(n)], pa.int32()),
            pa.array([None if r.random() < 0.2 else rand_str(r) for _ in range(n)], pa.utf8()),
            pa.array([None if r.random() < 0.2 else [r.randint(0, 9)] for _ in range(n)], pa.list_(pa.int64())),
            _dict([None if r.random() < 0.2 else r.randrange(3) for _ in range(n)], dictionary, pa.int8()),
            pa.array([None if r.random() < 0.2 else rand_bytes(r) for _ in range(n)], pa.binary_view()),
        ], schema=schema)

    return schema, [batch(k) for k in (0, 5, 0, 0, 7, 0)]


def case_no_batches():
    schema = pa.schema([("i", pa.int64()), ("s", pa.utf8()), ("l", pa.list_(pa.float32())),
                        ("st", pa.struct([("a", pa.bool_()), ("b", pa.decimal128(9, 3))])),
                        ("d", pa.dictionary(pa.int16(), pa.utf8())),
                        ("u", pa.dense_union([pa.field("x", pa.int32()), pa.field("y", pa.utf8())], [5, 10])),
                        ("ts", pa.timestamp("us", "UTC"))],
                       metadata={"note": "no batches"})
    return schema, []


def case_deep_nesting():
    rng, r = rngs(15)
    depth = 40
    n = 12

    # list<list<...<int32>>> with `depth` list levels
    def rand_nested_list(level):
        if r.random() < 0.15:
            return None
        if level == 0:
            return r.randint(-1000, 1000)
        return [rand_nested_list(level - 1) for _ in range(r.choice([0, 1, 1, 1, 2]))]

    lt = pa.int32()
    for _ in range(depth):
        lt = pa.list_(lt)
    lists = pa.array([rand_nested_list(depth) for _ in range(n)], lt)

    st = pa.int32()
    for lvl in range(depth):
        st = pa.struct([("v%d" % lvl, pa.int16()), ("c%d" % lvl, st)])

    def rand_struct(t):
        if r.random() < 0.1:
            return None
        if not pa.types.is_struct(t):
            return r.randint(-1000, 1000)
        return {t.field(0).name: None if r.random() < 0.2 else r.randint(-99, 99),
                t.field(1).name: rand_struct(t.field(1).type)}

    structs = pa.array([rand_struct(st) for _ in range(n)], st)
    return None, batches_from_columns(["list_x40", "struct_x40"], [lists, structs], [5, 7])


def case_wide():
    rng, r = rngs(16)
    ncols, n = 300, 20
    names = ["c%03d" % i for i in range(ncols)]
    cols = [pa.array(rng.integers(-2 ** 63, 2 ** 63 - 1, n, dtype="i8"), pa.int64(), mask=null_mask(rng, n, 0.1))
            for _ in range(ncols)]
    return None, batches_from_columns(names, cols, [10, 10])


def case_large_offsets():
    rng, r = rngs(17)
    n = 120
    ll = pa.array([None if r.random() < 0.15 else
                   [None if r.random() < 0.15 else rand_str(r) for _ in range(r.randint(0, 4))]
                   for _ in range(n)], pa.large_list(pa.large_utf8()))
    lb = pa.array([None if r.random() < 0.15 else rand_bytes(r, 40) for _ in range(n)], pa.large_binary())
    return None, batches_from_columns(["large_list_large_utf8", "large_binary"], [ll, lb], [50, 70])


CASES = [
    ("primitive", case_primitive),
    ("decimal", case_decimal),
    ("temporal", case_temporal),
    ("binary", case_binary),
    ("nested", case_nested),
    ("union", case_union),
    ("dictionary", case_dictionary),
    ("dictionary_delta", case_dictionary_delta),
    ("dictionary_replacement", case_dictionary_replacement),
    ("run_end_encoded", case_run_end_encoded),
    ("extension", case_extension),
    ("metadata", case_metadata),
    ("null", case_null),
    ("sliced", case_sliced),
    ("empty_batches", case_empty_batches),
    ("no_batches", case_no_batches),
    ("deep_nesting", case_deep_nesting),
    ("wide", case_wide),
    ("large_offsets", case_large_offsets),
]


# ---------------------------------------------------------------------------

def write_case(name, fn):
    res = fn()
    schema, batches = res[0], res[1]
    stream_only = res[2] if len(res) > 2 else False
    opts = res[3] if len(res) > 3 else None
    if schema is None:
        schema = batches[0].schema
    for b in batches:
        assert b.schema.equals(schema, check_metadata=True), (name, b.schema, schema)
    written = []
    kinds = [("arrows", pa.ipc.new_stream)] + ([] if stream_only else [("arrow", pa.ipc.new_file)])
    for ext, opener in kinds:
        path = os.path.join(OUT, "%s.%s" % (name, ext))
        sink = pa.BufferOutputStream()
        kw = {"options": opts} if opts is not None else {}
        with opener(sink, schema, **kw) as w:
            for b in batches:
                w.write_batch(b)
        data = sink.getvalue().to_pybytes()
        assert len(data) < MAX_FILE, "%s is %d bytes" % (path, len(data))
        with open(path, "wb") as f:
            f.write(data)
        written.append((path, len(data)))
    return written


def verify(name, paths):
    """Round-trip sanity: read back, check delta/replacement stats."""
    for path, _ in paths:
        if path.endswith(".arrows"):
            rd = pa.ipc.open_stream(path)
            list(rd)
            st = rd.stats
            if name == "dictionary_delta":
                assert st.num_dictionary_deltas >= 4 and st.num_replaced_dictionaries == 0, st
            elif name == "dictionary_replacement":
                assert st.num_replaced_dictionaries >= 2 and st.num_dictionary_deltas == 0, st
            else:
                assert st.num_dictionary_deltas == 0 and st.num_replaced_dictionaries == 0, (name, st)
        else:
            pa.ipc.open_file(path).read_all()


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    total = 0
    for name, fn in CASES:
        paths = write_case(name, fn)
        verify(name, paths)
        for p, sz in paths:
            total += sz
            print("%8d  %s" % (sz, os.path.relpath(p, HERE)))
    with open(os.path.join(OUT, "VERSIONS.txt"), "w") as f:
        f.write("pyarrow %s\nnumpy %s\npython %s\n" % (pa.__version__, np.__version__, sys.version.split()[0]))
    assert total < MAX_TOTAL, total
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
