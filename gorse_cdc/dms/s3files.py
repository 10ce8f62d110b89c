"""The S3 target's layout and CSV format, as AWS DMS writes them (dms-format.md).

- Full load: [prefix/]schema/table/LOAD00000001.csv (8-digit *hex* counter), no header,
  rows in the table's column order, NULL for nulls, RFC 4180 quoting. Op only when asked.
- CDC: [prefix/]schema/table/[YYYY/MM/DD/]YYYYMMDD-HHMMSSmmm.csv with Op (I/U/D) first;
  U holds the after-row, D the row as it was. An optional timestamp column follows Op.
- DMS CSVs carry no header, so the table definitions live beside them (our schema file):
  [prefix/]_table_definitions/schema/table.json {"columns": [{"name","type"}], "primary_key"}.
Pure: bytes in, bytes out; the S3 I/O lives with the callers.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gorse_cdc.dms.tables import S3FormatError, TableDefinition

NULL = "NULL"
LOAD_RE = re.compile(r"LOAD([0-9A-F]{8})\.(csv|parquet)(\.gz)?$")
CDC_RE = re.compile(r"(\d{8})-(\d{9})\.(csv|parquet)(\.gz)?$")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p)


def table_prefix(prefix: str, schema: str, table: str) -> str:
    return _join(prefix, schema, table) + "/"


def table_definition_key(prefix: str, schema: str, table: str) -> str:
    return _join(prefix, "_table_definitions", schema, f"{table}.json")


def _ext(data_format: str, gzip_: bool) -> str:
    return f".{data_format}" + (".gz" if gzip_ and data_format == "csv" else "")


def load_file_key(
    prefix: str, schema: str, table: str, n: int, data_format: str = "csv", gzip_: bool = False
) -> str:
    return _join(prefix, schema, table, f"LOAD{n:08X}{_ext(data_format, gzip_)}")


def cdc_file_key(
    prefix: str,
    schema: str,
    table: str,
    when: datetime,
    *,
    date_partition: bool = False,
    data_format: str = "csv",
    gzip_: bool = False,
) -> str:
    when = when.astimezone(UTC)
    name = when.strftime("%Y%m%d-%H%M%S") + f"{when.microsecond // 1000:03d}" + _ext(data_format, gzip_)
    folder = when.strftime("%Y/%m/%d") if date_partition else ""
    return _join(prefix, schema, table, folder, name)


@dataclass(frozen=True, order=True)
class S3FileName:
    """Sort key for a table's files: LOAD files first (by counter), then CDC by time."""

    kind: int  # 0 load, 1 cdc
    order: str
    key: str

    @property
    def is_load(self) -> bool:
        return self.kind == 0


def classify_key(key: str) -> S3FileName | None:
    name = key.rsplit("/", 1)[-1]
    if m := LOAD_RE.match(name):
        return S3FileName(0, m.group(1), key)
    if m := CDC_RE.match(name):
        return S3FileName(1, m.group(1) + m.group(2), key)
    return None


def format_value(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(v)


_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def _csv_field(v: Any) -> str:
    s = format_value(v)
    if s is None:
        return NULL
    if _NEEDS_QUOTES.search(s):
        return '"' + s.replace('"', '""') + '"'
    return s


def encode_csv(rows: Iterable[Sequence[Any]], *, gzip_: bool = False) -> bytes:
    """RFC 4180 CSV, "\\n" row delimiter, NULL for nulls, no header. Fields holding a comma, a
    quote, CR or LF are quoted (Python's csv module leaves a lone CR unquoted: not used)."""
    out = []
    for row in rows:
        fields = [_csv_field(v) for v in row]
        out.append('""' if fields == [""] else ",".join(fields))
    data = "".join(line + "\n" for line in out).encode("utf-8")
    return gzip.compress(data, mtime=0) if gzip_ else data


def decode_csv(data: bytes) -> Iterator[list[str]]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    yield from csv.reader(io.StringIO(data.decode("utf-8"), newline=""))


def rows_from_file(
    data: bytes,
    definition: TableDefinition,
    *,
    has_op: bool,
    timestamp_column: bool = False,
) -> Iterator[tuple[str, dict[str, str | None]]]:
    """Yield (op, row) with op in I/U/D ("L" for full-load rows without Op)."""
    names = definition.column_names
    lead = int(has_op) + int(timestamp_column)
    for i, fields in enumerate(decode_csv(data)):
        if len(fields) != lead + len(names):
            raise S3FormatError(
                f"{definition.schema}.{definition.table} line {i + 1}: {len(fields)} fields, "
                f"expected {lead + len(names)}"
            )
        op = fields[0] if has_op else "L"
        if op not in ("I", "U", "D", "L"):
            raise S3FormatError(f"line {i + 1}: unknown Op {op!r}")
        values = fields[lead:]
        yield op, {n: (None if v == NULL else v) for n, v in zip(names, values, strict=True)}


def format_timestamp_column(when: datetime) -> str:
    """TimestampColumnName values: yyyy-MM-dd HH:mm:ss.SSSSSS (UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def state_key(prefix: str, task: str) -> str:
    """Where the local DMS records a task's progress (e.g. full load finished) beside its files."""
    return _join(prefix, "_dms_state", f"{task}.json")


def rows_from_object(
    key: str,
    data: bytes,
    definition: TableDefinition,
    *,
    has_op: bool,
    timestamp_column: bool = False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """rows_from_file for either format, chosen by the key's extension. CSV values are text
    ("NULL" already turned into None); Parquet values are typed (int, str, date, datetime)."""
    if ".parquet" in key.rsplit("/", 1)[-1]:
        from gorse_cdc.dms.parquet import rows_from_parquet

        yield from rows_from_parquet(data, definition, has_op=has_op, timestamp_column=timestamp_column)
    else:
        yield from rows_from_file(data, definition, has_op=has_op, timestamp_column=timestamp_column)


def rows_with_commit_time(
    key: str,
    data: bytes,
    definition: TableDefinition,
    *,
    has_op: bool,
    timestamp_column: bool = False,
) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """Like rows_from_object, plus each row's TimestampColumnName value (the commit time in
    CDC files) when the files carry it (CSV); None otherwise."""
    if not timestamp_column or ".parquet" in key.rsplit("/", 1)[-1]:
        for op, row in rows_from_object(
            key, data, definition, has_op=has_op, timestamp_column=timestamp_column
        ):
            yield op, None, row
        return
    ts_index = int(has_op)
    fields_iter = decode_csv(data)
    for (op, row), fields in zip(
        rows_from_file(data, definition, has_op=has_op, timestamp_column=True), fields_iter, strict=True
    ):
        yield op, fields[ts_index], row
