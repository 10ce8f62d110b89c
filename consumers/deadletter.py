"""A record that can never apply, with everything needed to understand and replay it. Pure."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    reason: str
    error_type: str
    shard_id: str
    sequence_number: str
    table: str | None = None
    operation: str | None = None
    source: str = ""  # the stream name (or archive) it came from
    dead_lettered_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        try:
            raw_text, encoding = self.raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            raw_text, encoding = base64.b64encode(self.raw).decode("ascii"), "base64"
        at = self.dead_lettered_at or datetime.now(UTC)
        return {
            "source": self.source,
            "shard_id": self.shard_id,
            "sequence_number": self.sequence_number,
            "table": self.table,
            "operation": self.operation,
            "error_type": self.error_type,
            "reason": self.reason,
            "raw": raw_text,
            "raw_encoding": encoding,
            "dead_lettered_at": at.isoformat().replace("+00:00", "Z"),
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeadLetter:
        raw = d["raw"].encode() if d.get("raw_encoding") == "utf-8" else base64.b64decode(d["raw"])
        at = d.get("dead_lettered_at")
        return cls(
            raw,
            d["reason"],
            d["error_type"],
            d["shard_id"],
            d["sequence_number"],
            d.get("table"),
            d.get("operation"),
            d.get("source", ""),
            datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None,
        )
