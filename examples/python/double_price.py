"""Example ValkeyFlight processor: doubles the ``price`` column and records which batch and attempt made the
row (columns ``source`` and ``attempt``).

    valkeyflight worker --exec 'python examples/python/double_price.py'
    valkeyflight worker --exec-persistent 'python examples/python/double_price.py'
"""

import pyarrow as pa
import pyarrow.compute as pc

from valkeyflight_processor import run


def process(table, context):
    index = table.schema.get_field_index("price")
    if index < 0:
        raise KeyError(f"batch {context.key} has no 'price' column (columns: {', '.join(table.column_names)})")
    doubled = pc.multiply(table.column(index), 2)
    table = table.set_column(index, table.schema.field(index).with_type(doubled.type), doubled)
    table = table.append_column("source", pa.array([context.key] * table.num_rows, pa.string()))
    return table.append_column("attempt", pa.array([context.attempt] * table.num_rows, pa.int32()))


if __name__ == "__main__":
    run(process)
