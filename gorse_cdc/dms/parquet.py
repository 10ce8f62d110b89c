"""DMS S3 files in Parquet (DataFormat parquet): typed columns, Op and the optional timestamp
column first, as strings. Pure: bytes in, bytes out. pyarrow is imported here only."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gorse_cdc.dms.tables import S3FormatError, TableDefinition

_TYPES: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    # a MySQL source's COLUMN_TYPE (gorse_cdc.dms.mysql_types): tinyint(1), int(11), datetime(6)
    "tinyint": pa.int16(),
    "mediumint": pa.int32(),
    "int": pa.int32(),
    "float": pa.float32(),
    "double": pa.float64(),
    "datetime": pa.timestamp("us"),
}
_UNSIGNED: dict[str, pa.DataType] = {"int": pa.int64(), "mediumint": pa.int32(), "bigint": pa.uint64()}


def arrow_type(source_type: str) -> pa.DataType:
    base = source_type.split("(", 1)[0].strip()
    if source_type.lower().endswith(" unsigned") and base in _UNSIGNED:
        return _UNSIGNED[base]
    return _TYPES.get(base, pa.string())


def _cell(v: Any, t: pa.DataType) -> Any:
    if v is None or t != pa.string():
        return v
    return v if isinstance(v, str) else str(v)


def encode_parquet(
    rows: Sequence[Sequence[Any]],
    definition: TableDefinition,
    *,
    has_op: bool,
    timestamp_column: str | None = None,
) -> bytes:
    """rows: [Op,] [timestamp text,] then the values in the definition's column order."""
    fields: list[pa.Field] = []
    if has_op:
        fields.append(pa.field("Op", pa.string()))
    if timestamp_column:
        fields.append(pa.field(timestamp_column, pa.string()))
    fields += [pa.field(n, arrow_type(t)) for n, t in definition.columns]
    schema = pa.schema(fields)
    columns = [[_cell(r[i], f.type) for r in rows] for i, f in enumerate(fields)]
    table = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, fields, strict=True)], schema=schema
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


def rows_from_parquet(
    data: bytes,
    definition: TableDefinition,
    *,
    has_op: bool,
    timestamp_column: bool = False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    table = pq.read_table(io.BytesIO(data))
    lead = int(has_op) + int(timestamp_column)
    names = definition.column_names
    if table.num_columns != lead + len(names):
        raise S3FormatError(
            f"{definition.schema}.{definition.table}: {table.num_columns} columns, "
            f"expected {lead + len(names)}"
        )
    for i, row in enumerate(table.to_pylist()):
        values = list(row.values())
        op = values[0] if has_op else "L"
        if op not in ("I", "U", "D", "L"):
            raise S3FormatError(f"row {i + 1}: unknown Op {op!r}")
        yield op, dict(zip(names, values[lead:], strict=True))
