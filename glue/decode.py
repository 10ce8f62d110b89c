"""One DMS S3 file -> (op, values) rows in file order. CSV through the shared decoder
(gorse_cdc.dms.s3files: RFC 4180, NULL, gzip); Parquet through pyarrow (DMS writes Parquet
with column names, Op first on CDC files). Pure: bytes in, rows out."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from gorse_cdc.dms.s3files import S3FileName, decode_csv, rows_from_file
from gorse_cdc.dms.tables import S3FormatError, TableDefinition

Row = tuple[str, list[str | None]]


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)


def _csv_has_op(data: bytes, definition: TableDefinition, timestamp_column: bool) -> bool:
    """LOAD files carry Op only with IncludeOpForFullLoad: tell by the field count."""
    expected = len(definition.columns) + int(timestamp_column)
    for fields in decode_csv(data):
        return len(fields) == expected + 1
    return False


def _parquet_rows(data: bytes, definition: TableDefinition, key: str) -> Iterator[Row]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    names = definition.column_names
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise S3FormatError(f"{key}: columns {missing} missing from the Parquet file")
    has_op = "Op" in table.column_names
    for i, rec in enumerate(table.to_pylist()):
        op = str(rec["Op"]) if has_op else "L"
        if op not in ("I", "U", "D", "L"):
            raise S3FormatError(f"{key} row {i + 1}: unknown Op {op!r}")
        yield op, [_text(rec[n]) for n in names]


def file_rows(
    data: bytes, name: S3FileName, definition: TableDefinition, timestamp_column: bool
) -> Iterator[Row]:
    """Rows of one file in line order. Raises S3FormatError on a malformed file."""
    if ".parquet" in name.key.rsplit("/", 1)[-1]:
        yield from _parquet_rows(data, definition, name.key)
        return
    has_op = (not name.is_load) or _csv_has_op(data, definition, timestamp_column)
    names = definition.column_names
    try:
        for op, row in rows_from_file(data, definition, has_op=has_op, timestamp_column=timestamp_column):
            yield op, [row[n] for n in names]
    except S3FormatError as e:
        raise S3FormatError(f"{name.key}: {e}") from None
