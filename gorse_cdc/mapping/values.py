"""Typed column values from whatever the source sent: JSON values from Kinesis records,
strings from S3 CSV files, Python objects from a database driver. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from gorse_cdc.errors import PermanentRecordError

# DMS S3 CSV's default null marker
CSV_NULL = "NULL"


class BadValueError(PermanentRecordError):
    pass


def coerce(column: str, kind: str, value: Any) -> Any:
    """Return ``value`` as the declared kind, or None for nulls. Raise BadValueError."""
    if value is None:
        return None
    try:
        if kind == "str":
            return value if isinstance(value, str) else str(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("boolean")
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError("not integral")
                return int(value)
            if isinstance(value, str):
                f = float(value)  # DMS sends large integers in scientific notation
                if not f.is_integer():
                    raise ValueError("not integral")
                return int(value) if value.lstrip("-").isdigit() else int(f)
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("boolean")
            return float(value)
        if kind == "date":
            return to_date(value)
        if kind == "timestamp":
            return to_datetime(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise BadValueError(f"column {column!r}: {value!r} is not a valid {kind} ({e})") from None
    raise BadValueError(f"column {column!r}: unknown type {kind!r}")


def to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # DMS and timestamp-without-tz columns are UTC
    return dt.astimezone(UTC)


def coerce_row(columns: Mapping[str, str], row: dict[str, Any], *, csv: bool = False) -> dict[str, Any]:
    """Coerce the declared columns of ``row``; undeclared columns are ignored."""
    out: dict[str, Any] = {}
    for name, kind in columns.items():
        if name not in row:
            continue
        v = row[name]
        if csv and v == CSV_NULL:
            v = None
        out[name] = coerce(name, kind, v)
    return out
