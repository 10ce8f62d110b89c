"""Engagement events: the request body (validated with pydantic) and their Kinesis records.
Pure: no I/O.

Wire format of one record on the events stream (partition key: the user id, so one user's
events stay in order on one shard): {"gorse-cdc": "event", "user": "1", "item": "42",
"type": "play", "ts": "2026-11-28T09:00:00+00:00", "value": 1.0}. The consumer's mapping
(``[events]`` in the mapping TOML) turns it into Gorse feedback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

KIND = "event"
_ID = r"^[A-Za-z0-9][A-Za-z0-9_:@.+-]{0,127}$"


def _no_dots(v: str) -> str:
    if ".." in v:
        raise ValueError("must not contain '..'")
    return v


Id = Annotated[str, StringConstraints(pattern=_ID), AfterValidator(_no_dots)]


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: Id
    item: Id
    type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")]
    timestamp: datetime | None = Field(None, description="when it happened (default: received)")
    value: float = Field(1.0, ge=-1e6, le=1e6, allow_inf_nan=False)


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1)


def check_types(batch: EventBatch, allowed: frozenset[str]) -> list[dict[str, object]]:
    """Errors (pydantic-shaped) for event types the mapping does not know."""
    return [
        {"loc": ["events", i, "type"], "msg": f"unknown event type {e.type!r}; one of {sorted(allowed)}"}
        for i, e in enumerate(batch.events)
        if e.type not in allowed
    ]


def to_record(event: Event, received_at: datetime) -> dict[str, object]:
    ts = event.timestamp or received_at
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    data = orjson.dumps(
        {
            "gorse-cdc": KIND,
            "user": event.user,
            "item": event.item,
            "type": event.type,
            "ts": ts.astimezone(UTC).isoformat(),
            "value": event.value,
        }
    )
    return {"Data": data, "PartitionKey": event.user}
