"""Gorse v0.5 entities, validated the way Gorse validates them, before any request is sent.

Field names on the wire are Gorse's Go names (UserId, Labels, ...); ``to_json`` gives them.
Labels: any JSON made of strings, numbers, all-string arrays, all-number arrays and objects
nesting those. Booleans, nulls, mixed arrays and arrays of objects are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gorse_cdc.errors import InvalidEntityError

Labels = Any  # JSON value accepted by validate_labels


def validate_id(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidEntityError(f"{kind} must be a string, got {type(value).__name__}")
    if value == "":
        raise InvalidEntityError(f"{kind} must not be empty")
    if "/" in value:
        raise InvalidEntityError(f"{kind} {value!r} contains '/', which Gorse cannot route")
    return value


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def validate_labels(labels: object, where: str = "Labels") -> Labels:
    """Return ``labels`` unchanged if Gorse accepts it, else raise InvalidEntityError."""
    if labels is None:
        return None if where == "Labels" else _reject(where, "null")
    if isinstance(labels, bool):
        _reject(where, "a boolean")
    if isinstance(labels, str) or _is_number(labels):
        return labels
    if isinstance(labels, list):
        if all(isinstance(x, str) for x in labels) or all(_is_number(x) for x in labels):
            return labels
        _reject(where, "an array mixing types or holding booleans, nulls, arrays or objects")
    if isinstance(labels, dict):
        for k, v in labels.items():
            if not isinstance(k, str):
                _reject(where, f"a non-string key {k!r}")
            if v is None:
                _reject(f"{where}.{k}", "null")
            validate_labels(v, f"{where}.{k}")
        return labels
    return _reject(where, f"a {type(labels).__name__}")


def _reject(where: str, what: str) -> Any:
    raise InvalidEntityError(f"{where}: Gorse rejects {what}")


def format_timestamp(ts: datetime | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    labels: Labels = None
    comment: str = ""

    def __post_init__(self) -> None:
        validate_id("UserId", self.user_id)
        validate_labels(self.labels)

    def to_json(self) -> dict[str, Any]:
        return {"UserId": self.user_id, "Labels": self.labels, "Comment": self.comment}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> User:
        return cls(d["UserId"], d.get("Labels"), d.get("Comment") or "")


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    labels: Labels = None
    categories: tuple[str, ...] = ()
    timestamp: datetime | None = None
    comment: str = ""
    is_hidden: bool = False

    def __post_init__(self) -> None:
        validate_id("ItemId", self.item_id)
        validate_labels(self.labels)
        for c in self.categories:
            if not isinstance(c, str) or c == "" or "/" in c:
                raise InvalidEntityError(f"Category {c!r} must be a non-empty string without '/'")

    def to_json(self) -> dict[str, Any]:
        return {
            "ItemId": self.item_id,
            "IsHidden": self.is_hidden,
            "Categories": list(self.categories),
            "Timestamp": format_timestamp(self.timestamp),
            "Labels": self.labels,
            "Comment": self.comment,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Item:
        return cls(
            d["ItemId"],
            d.get("Labels"),
            tuple(d.get("Categories") or ()),
            parse_timestamp(d.get("Timestamp")),
            d.get("Comment") or "",
            bool(d.get("IsHidden", False)),
        )


@dataclass(frozen=True, slots=True)
class Feedback:
    feedback_type: str
    user_id: str
    item_id: str
    value: float = 0.0
    timestamp: datetime | None = None
    comment: str = ""
    key: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_id("FeedbackType", self.feedback_type)
        validate_id("UserId", self.user_id)
        validate_id("ItemId", self.item_id)
        object.__setattr__(self, "key", (self.feedback_type, self.user_id, self.item_id))

    def to_json(self) -> dict[str, Any]:
        return {
            "FeedbackType": self.feedback_type,
            "UserId": self.user_id,
            "ItemId": self.item_id,
            "Value": self.value,
            "Timestamp": format_timestamp(self.timestamp),
            "Comment": self.comment,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Feedback:
        return cls(
            d["FeedbackType"],
            d["UserId"],
            d["ItemId"],
            float(d.get("Value") or 0.0),
            parse_timestamp(d.get("Timestamp")),
            d.get("Comment") or "",
        )
