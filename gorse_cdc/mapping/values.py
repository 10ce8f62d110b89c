"""Typed column values from whatever the source sent: JSON values from Kinesis records,
strings from S3 CSV files, Python objects from a database driver. Pure; no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from gorse_cdc.errors import PermanentRecordError

# DMS S3 CSV's default null marker
CSV_NULL = "NULL"


class BadValueError(PermanentRecordError):
    pass


NUMBER = re.compile(r"-?\d+(\.\d*)?([eE][+-]?\d+)?|-?\.\d+([eE][+-]?\d+)?")


def to_id(value: Any) -> str:
    """An entity ID as Gorse must see it, the same whatever the source sent: text IDs as they
    are; numbers (DMS sends 12, 12.0, "1.2345e+18" for one bigint) as their exact digits. A
    number that is not integral is no ID: ValueError."""
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    else:
        text = value if isinstance(value, str) else str(value)
        if text.isdigit() or not NUMBER.fullmatch(text):
            return text  # plain digits (leading zeros kept) or a text ID
        number = Decimal(text)
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError("a numeric ID must be integral")
    return str(int(number))


def coerce(column: str, kind: str, value: Any) -> Any:
    """Return ``value`` as the declared kind, or None for nulls. Raise BadValueError."""
    if value is None:
        return None
    try:
        if kind == "id":
            return to_id(value)
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
                if value.lstrip("-").isdigit():
                    return int(value)
                d = Decimal(value)  # DMS sends large integers in scientific notation: exact
                if not d.is_finite() or d != d.to_integral_value():
                    raise ValueError("not integral")
                return int(d)
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("boolean")
            return float(value)
        if kind == "date":
            return to_date(value)
        if kind == "timestamp":
            return to_datetime(value)
    except (TypeError, ValueError, OverflowError, ArithmeticError) as e:
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
