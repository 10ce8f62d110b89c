"""MySQL column values as AWS DMS carries them from a MySQL-compatible source. Pure.

A value reaches this module from a driver row (PyMySQL, the full load and verify) or from a
binlog row event (mysql-replication, CDC); both leave it as DMS would hand it to a target, so
that the one mapping sees the same thing whatever the source engine (docs/mysql.md):

- zero and invalid dates (``0000-00-00``, ``2024-00-10``) -> null;
- DATETIME and TIMESTAMP -> UTC-aware datetimes (DATETIME read as UTC, the project's rule);
- TINYINT(1) / BOOL -> the integer 0 or 1 (DMS INT1), never a JSON boolean;
- BIGINT UNSIGNED above 2**63 -> its exact value (a binlog without signedness metadata gives
  the two's complement: put right here from the column type);
- DECIMAL -> Decimal (a string in JSON: no float rounding);
- ENUM -> its label (an index from a binlog without metadata is resolved), SET -> the labels
  joined by commas in definition order;
- JSON -> the document (a JSON string in Kinesis, like a PostgreSQL jsonb);
- text -> str (utf8mb4), binary -> bytes (hex in JSON); TIME -> ``HH:MM:SS[.ffffff]``.

``column_type`` is information_schema.COLUMNS.COLUMN_TYPE, e.g. ``bigint(20) unsigned``,
``tinyint(1)``, ``decimal(10,2)``, ``enum('a','b')``, ``datetime(6)``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_LABELS = re.compile(r"'((?:[^']|'')*)'")
_TEXT = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"})

# AWS DMS's own data types for MySQL source types ("Source data types for MySQL" in the DMS guide)
_DMS_TYPES = {
    "tinyint": "INT1",
    "smallint": "INT2",
    "mediumint": "INT4",
    "int": "INT4",
    "integer": "INT4",
    "bigint": "INT8",
    "decimal": "NUMERIC",
    "numeric": "NUMERIC",
    "float": "REAL4",
    "double": "REAL8",
    "bit": "BYTES",
    "date": "DATE",
    "time": "TIME",
    "datetime": "DATETIME",
    "timestamp": "DATETIME",
    "year": "INT2",
    "char": "WSTRING",
    "varchar": "WSTRING",
    "tinytext": "WSTRING",
    "text": "WSTRING",
    "mediumtext": "NCLOB",
    "longtext": "NCLOB",
    "enum": "WSTRING",
    "set": "WSTRING",
    "json": "NCLOB",
    "binary": "BYTES",
    "varbinary": "BYTES",
    "tinyblob": "BYTES",
    "blob": "BLOB",
    "mediumblob": "BLOB",
    "longblob": "BLOB",
}


def base_type(column_type: str) -> str:
    """'bigint(20) unsigned' -> 'bigint'; 'enum('a','b')' -> 'enum'."""
    return re.split(r"[\s(]", column_type.strip().lower(), maxsplit=1)[0]


def is_unsigned(column_type: str) -> bool:
    return " unsigned" in column_type.lower()


def labels(column_type: str) -> list[str]:
    """The labels of an ENUM or SET type, in definition order."""
    inner = column_type[column_type.find("(") + 1 : column_type.rfind(")")]
    return [m.replace("''", "'") for m in _LABELS.findall(inner)]


def dms_type(column_type: str) -> str:
    """The DMS data type name of a MySQL column type (control records' table-def)."""
    t = base_type(column_type)
    if t in _INT_BITS and is_unsigned(column_type):
        return {8: "UINT1", 16: "UINT2", 24: "UINT4", 32: "UINT4", 64: "UINT8"}[_INT_BITS[t]]
    return _DMS_TYPES.get(t, "WSTRING")


def _zero_or_invalid_date(text: str) -> bool:
    head = text[:10]
    try:
        date.fromisoformat(head)
    except ValueError:
        return True
    return False


def _datetime(value: datetime | str) -> datetime | None:
    if isinstance(value, str):
        if _zero_or_invalid_date(value):
            return None
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _time(value: timedelta) -> str:
    total = value.days * 86400 + value.seconds
    sign = "-" if total < 0 else ""
    total = abs(total)
    text = f"{sign}{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return text + (f".{value.microseconds:06d}" if value.microseconds else "")


def to_dms_value(column_type: str, value: Any) -> Any:
    """A driver's or a binlog event's value -> the Python value DMS carries (see above)."""
    if value is None:
        return None
    t = base_type(column_type)
    if t in _INT_BITS:
        if isinstance(value, bool):
            return int(value)
        v = int(value)
        if v < 0 and is_unsigned(column_type):
            v += 1 << _INT_BITS[t]
        return v
    if t in ("decimal", "numeric"):
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if t in ("float", "double"):
        return float(value)
    if t == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        text = value.decode() if isinstance(value, bytes) else str(value)
        return None if _zero_or_invalid_date(text) else date.fromisoformat(text[:10])
    if t in ("datetime", "timestamp"):
        if isinstance(value, bytes):
            value = value.decode()
        return _datetime(value)
    if t == "time" and isinstance(value, timedelta):
        return _time(value)
    if t == "year":
        return int(value)
    if t == "enum":
        if isinstance(value, int):
            names = labels(column_type)
            return names[value - 1] if 0 < value <= len(names) else ""
        return value.decode() if isinstance(value, bytes) else str(value)
    if t == "set":
        if isinstance(value, set | frozenset | list | tuple):
            order = labels(column_type)
            chosen = {v.decode() if isinstance(v, bytes) else str(v) for v in value}
            return ",".join(x for x in order if x in chosen)
        return value.decode() if isinstance(value, bytes) else str(value)
    if t in _TEXT and isinstance(value, bytes):
        return value.decode("utf-8")
    if t == "json" and isinstance(value, bytes | str):
        import orjson

        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value.decode() if isinstance(value, bytes) else value
    return value
