#!/usr/bin/env python3
"""Compare two Arrow IPC streams/files (format detected by the "ARROW1" magic).

Usage: compare.py A B
Exit 0 if both hold equal data, else print a one-line reason to stderr and exit 1
(a file that cannot be read also gives exit 1; bad usage gives exit 2).

Equal means:
  * schemas equal including schema- and field-level metadata;
  * the same number of record batches with the same row counts;
  * every batch equal (RecordBatch.equals(check_metadata=True)), and the tables
    built with pa.Table.from_batches equal (Table.equals(check_metadata=True)).
Floating point is compared bit-exactly via canonical_dump values: Arrow's own
equality says NaN != NaN (so a float column failing Arrow's check is accepted iff
its canonical values are identical) and -0.0 == 0.0 (so float columns passing
Arrow's check must additionally have identical canonical values).
"""
import os
import sys

import pyarrow as pa

sys.dont_write_bytecode = True  # keep Tests/Fixtures free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import canonical_dump as cd  # noqa: E402


def has_float(t):
    if pa.types.is_floating(t):
        return True
    if isinstance(t, pa.ExtensionType):
        return has_float(t.storage_type)
    if pa.types.is_dictionary(t):
        return has_float(t.value_type)
    if pa.types.is_run_end_encoded(t):
        return has_float(t.value_type)
    if pa.types.is_map(t):
        return has_float(t.key_type) or has_float(t.item_type)
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)):
        return has_float(t.value_type)
    if pa.types.is_struct(t) or pa.types.is_union(t):
        return any(has_float(t.field(i).type) for i in range(t.num_fields))
    return False


def batch_columns_equal(a, b, bi):
    """Column-wise check of two batches with equal schemas; returns reason or None."""
    ca = cb = None
    for i in range(a.num_columns):
        name = a.schema.field(i).name
        t = a.schema.field(i).type
        try:
            x, y = a.column(i), b.column(i)
            if has_float(t):
                # bit-exact: NaN payloads must match (Arrow: NaN != NaN) and so must
                # the sign of zero (Arrow: -0.0 == 0.0)
                if cd.canon(x) == cd.canon(y):
                    continue
            elif x.equals(y):
                continue
        except KeyError:  # pyarrow cannot wrap this column type (e.g. month_interval)
            if ca is None:
                ca, cb = cd.canon_c_batch(a), cd.canon_c_batch(b)
            if ca[i] == cb[i]:
                continue
        return "batch %d column %d (%r, %s) differs" % (bi, i, name, t)
    return None


def compare(pa_path, pb_path):
    sa, ba = cd.read_batches(pa_path)
    sb, bb = cd.read_batches(pb_path)
    if not sa.equals(sb, check_metadata=True):
        if sa.equals(sb, check_metadata=False):
            if sa.metadata != sb.metadata:
                return "schema-level metadata differs"
            for fa, fb in zip(sa, sb):
                if not fa.equals(fb, check_metadata=True):
                    return "field metadata differs (field %r)" % fa.name
            return "field metadata differs (nested field)"
        if len(sa) != len(sb):
            return "schemas differ: %d vs %d fields" % (len(sa), len(sb))
        for k, (fa, fb) in enumerate(zip(sa, sb)):
            if not fa.equals(fb, check_metadata=False):
                return ("schemas differ at field %d: %s vs %s" % (k, fa, fb)).replace("\n", " ")[:400]
        return "schemas differ"
    if len(ba) != len(bb):
        return "batch count differs: %d vs %d" % (len(ba), len(bb))
    float_ok = False
    for i, (x, y) in enumerate(zip(ba, bb)):
        if x.num_rows != y.num_rows:
            return "batch %d row count differs: %d vs %d" % (i, x.num_rows, y.num_rows)
        if x.equals(y, check_metadata=True) and not any(has_float(f.type) for f in x.schema):
            continue
        reason = batch_columns_equal(x, y, i)
        if reason:
            return reason
        float_ok = True  # floating-point columns were compared bit-exactly instead
    ta = pa.Table.from_batches(ba, schema=sa)
    tb = pa.Table.from_batches(bb, schema=sb)
    if not ta.equals(tb, check_metadata=True) and not float_ok:
        return "tables differ"
    return None


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: compare.py A B\n")
        return 2
    try:
        reason = compare(argv[1], argv[2])
    except (pa.ArrowException, OSError) as e:
        sys.stderr.write("cannot read: %s\n" % str(e).replace("\n", " "))
        return 1
    if reason:
        sys.stderr.write(reason + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
