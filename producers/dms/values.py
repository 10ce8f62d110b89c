"""PostgreSQL values as AWS DMS writes them. Pure.

Three views of one value: the Python value (from wal2json text or a psycopg row), its JSON
form in a Kinesis record, and its text form in an S3 CSV (gorse_cdc.dms.s3files.format_value).
DMS conventions kept here: dates ``YYYY-MM-DD``; timestamps in JSON as ISO 8601 UTC with
microseconds and ``Z``; json/jsonb as a JSON *string*; numeric as a string (no float rounding).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

INT_TYPES = frozenset({"smallint", "integer", "bigint", "int2", "int4", "int8"})
FLOAT_TYPES = frozenset({"real", "double precision", "float4", "float8"})
TIMESTAMP_TYPES = frozenset({"timestamp without time zone", "timestamp"})
TIMESTAMPTZ_TYPES = frozenset({"timestamp with time zone", "timestamptz"})

# DMS's own data type names, for control records' table-def (best effort)
_DMS_TYPES = {
    "smallint": "INT2",
    "integer": "INT4",
    "bigint": "INT8",
    "real": "REAL4",
    "double precision": "REAL8",
    "numeric": "NUMERIC",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "time without time zone": "TIME",
    "timestamp without time zone": "DATETIME",
    "timestamp with time zone": "DATETIME",
    "text": "NCLOB",
    "json": "NCLOB",
    "jsonb": "NCLOB",
    "bytea": "BLOB",
    "uuid": "WSTRING",
}


def base_type(pg_type: str) -> str:
    """'character varying(20)' -> 'character varying'; 'numeric(10,2)' -> 'numeric'."""
    return pg_type.split("(", 1)[0].strip()


def dms_type(pg_type: str) -> str:
    t = base_type(pg_type)
    if t in ("character varying", "character", "varchar", "char"):
        return "WSTRING"
    return _DMS_TYPES.get(t, "WSTRING")


def parse_timestamp(text: str) -> datetime:
    """PostgreSQL timestamp text (any fraction width, optional +00 offset) -> aware UTC."""
    s = text.strip()
    if s.endswith(("+00", "-00")) or (len(s) > 3 and s[-3] in "+-" and s[-2:].isdigit()):
        s += ":00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def from_wal2json(pg_type: str, value: Any) -> Any:
    """A wal2json v2 value (JSON number/bool for numbers, text otherwise) -> Python value."""
    if value is None:
        return None
    t = base_type(pg_type)
    if t in INT_TYPES:
        return int(value)
    if t in FLOAT_TYPES:
        return float(value)
    if t == "numeric":
        return Decimal(str(value))
    if t == "boolean":
        return bool(value) if isinstance(value, bool) else str(value) in ("t", "true")
    if t == "date":
        return date.fromisoformat(str(value))
    if t in TIMESTAMP_TYPES or t in TIMESTAMPTZ_TYPES:
        return parse_timestamp(str(value))
    return value


def _int(value: Any) -> Any:
    return value if type(value) is int else int(value)


def _numeric(value: Any) -> Any:
    return Decimal(str(value))


def _boolean(value: Any) -> Any:
    return value if isinstance(value, bool) else str(value) in ("t", "true")


def _date(value: Any) -> Any:
    return date.fromisoformat(str(value))


def _timestamp(value: Any) -> Any:
    return parse_timestamp(str(value))


@functools.cache
def wal2json_converter(pg_type: str) -> Callable[[Any], Any] | None:
    """from_wal2json for one column type, decided once per type; None: the value is kept as
    wal2json sends it (text and the other types from_wal2json passes through). Call it on
    non-null values only."""
    t = base_type(pg_type)
    if t in INT_TYPES:
        return _int  # wal2json sends JSON numbers: int() of an int is the int itself
    if t in FLOAT_TYPES:
        return float
    if t in TIMESTAMP_TYPES or t in TIMESTAMPTZ_TYPES:
        return _timestamp
    return {"numeric": _numeric, "boolean": _boolean, "date": _date}.get(t)


def normalize(value: Any) -> Any:
    """A psycopg value -> the same Python value from_wal2json gives (UTC-aware timestamps)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def to_json_value(value: Any) -> Any:
    """Python value -> what DMS puts in a Kinesis record's data."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return _iso_z(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


_JSON_AS_IS = frozenset({int, str, float, bool, type(None)})


def json_value(value: Any) -> Any:
    """to_json_value, with the common types (what JSON holds as they are) tested first."""
    return value if type(value) in _JSON_AS_IS else to_json_value(value)


def to_csv_value(value: Any) -> Any:
    """Python value -> what s3files.format_value should print (naive UTC timestamps)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def dms_timestamp(dt: datetime) -> str:
    """Metadata timestamps: 2024-07-29T00:58:17.983670Z (a naive value is local time)."""
    return _iso_z(dt if dt.tzinfo is not None else dt.astimezone(UTC))


def _iso_z(value: datetime) -> str:
    """2024-07-29T00:58:17.983670Z (UTC; a naive value is taken as UTC). isoformat, not
    strftime: a full load formats three timestamps per row and strftime took 2.2 s per 100k."""
    tz = value.tzinfo
    if tz is UTC:
        value = value.replace(tzinfo=None)
    elif tz is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"
