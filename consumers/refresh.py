"""Liked-labels refresh records: one writer per user, across workers.

A user's liked labels are derived from the items they liked, and an item's genres are edited
on the item's shard, which another worker may hold. If that worker wrote the likers itself, two
workers would read-compute-write the same user at once and the later write could carry an older
view (of the user's feedback or of the item's genres), with no later change to correct it.
Instead the item's writer, once the item is written to Gorse, puts one refresh record per liker
on the stream, with the user id as partition key: it lands on the user's own shard, after the
user's earlier changes and before their later ones, and only that shard's owner writes the user.
The owner reads the told items fresh from Gorse (the item was written before the record was put,
so Gorse holds that edit or a newer one). The record also carries the values it was told with,
for diagnosis only: records of different users' shards are consumed out of order, so a value
carried by one may be older than Gorse's and must never be cached.

Wire format (JSON, not a DMS record): {"gorse-cdc": "refresh-liked", "user": "17",
"items": {"42": ["Comedy", "Drama"], "7": null}}.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from gorse_cdc.errors import RetriableError
from gorse_cdc.mapping.ops import RefreshLiked

log = logging.getLogger(__name__)
KIND = "refresh-liked"
_MARK = b'"gorse-cdc"'
MAX_PUT = 500  # PutRecords entries per call
Values = tuple[str, ...] | None


def encode_refresh(user_id: str, items: Mapping[str, Values]) -> bytes:
    values = {i: list(v) if v is not None else None for i, v in items.items()}
    return orjson.dumps({"gorse-cdc": KIND, "user": user_id, "items": values})


def decode_refresh(data: bytes) -> RefreshLiked | None:
    """The refresh a record asks for; None when the record is not a refresh record."""
    if _MARK not in data[:40]:
        return None
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("gorse-cdc") != KIND:
        return None
    items = body.get("items") or {}
    return RefreshLiked(
        str(body["user"]),
        tuple(
            sorted((str(i), tuple(str(x) for x in v) if v is not None else None) for i, v in items.items())
        ),
    )


class RefreshPublisher:
    """Puts refresh records on the live stream. Entries Kinesis refuses (throttling) raise
    RefreshNotPublishedError: the whole plan is retried, and every call in it is idempotent."""

    def __init__(self, kinesis: Any, stream: str) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.published = 0

    async def publish(self, refreshes: Mapping[str, Mapping[str, Values]]) -> None:
        entries = [
            {"Data": encode_refresh(user, items), "PartitionKey": user}
            for user, items in sorted(refreshes.items())
        ]
        for start in range(0, len(entries), MAX_PUT):
            chunk = entries[start : start + MAX_PUT]
            resp = await self.kinesis.put_records(StreamName=self.stream, Records=chunk)
            failed = int(resp.get("FailedRecordCount", 0))
            if failed:
                raise RefreshNotPublishedError(f"Kinesis refused {failed} of {len(chunk)} refresh records")
            self.published += len(chunk)


class RefreshNotPublishedError(RetriableError):
    """Kinesis throttled some refresh records: the plan is retried (every call is idempotent)."""
