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

Fan-out records: the likers of an item are many (tens of thousands for a popular movie), more
than a shard takes in a second, so they are not told from the plan that writes the item. That
plan first puts one fan-out record on the item's own shard (partition key: the item id), then
writes the item: the record is a durable promise (a worker that dies after the write leaves it
on the stream; one that dies before writes the item again and promises again), and it is read
after the write (same shard, later position). Whoever owns the shard then keeps it in steps of
at most ``fan_out_per_plan`` likers per plan, in user id order, putting the rest back as a
continuation record (``after``: the last liker told) before its plan is checkpointed. A deleted
item's likers are listed in the record (Gorse drops them with the item).
Wire format: {"gorse-cdc": "fan-out-likers", "item": "42", "after": "", "users": null}.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from gorse_cdc.errors import RetriableError
from gorse_cdc.mapping.ops import FanOutLikers, RefreshLiked

log = logging.getLogger(__name__)
KIND = "refresh-liked"
FAN_OUT = "fan-out-likers"
_MARK = b'"gorse-cdc"'
MAX_PUT = 500  # PutRecords entries per call
MAX_PUT_BYTES = 4 << 20  # PutRecords takes 5 MiB per call
USERS_PER_RECORD = 2_000  # listed likers per fan-out record (~40 kB; a record takes 1 MiB)
Values = tuple[str, ...] | None


def encode_refresh(user_id: str, items: Mapping[str, Values], *, reread: bool = False) -> bytes:
    values = {i: list(v) if v is not None else None for i, v in items.items()}
    body: dict[str, Any] = {"gorse-cdc": KIND, "user": user_id, "items": values}
    if reread:
        body["reread"] = True
    return orjson.dumps(body)


def encode_fan_out(request: FanOutLikers) -> bytes:
    users = list(request.users) if request.users is not None else None
    return orjson.dumps(
        {"gorse-cdc": FAN_OUT, "item": request.item_id, "after": request.after, "users": users}
    )


def split_fan_out(requests: Iterable[FanOutLikers]) -> list[FanOutLikers]:
    """Requests whose listed likers fit one record each (USERS_PER_RECORD)."""
    out: list[FanOutLikers] = []
    for r in requests:
        if r.users is None or len(r.users) <= USERS_PER_RECORD:
            out.append(r)
            continue
        for start in range(0, len(r.users), USERS_PER_RECORD):
            out.append(FanOutLikers(r.item_id, r.after, r.users[start : start + USERS_PER_RECORD]))
    return out


def decode_refresh(data: bytes) -> RefreshLiked | FanOutLikers | None:
    """The refresh (or fan-out) a record asks for; None when it is neither."""
    if _MARK not in data[:40]:
        return None
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(body, dict) and body.get("gorse-cdc") == FAN_OUT:
        users = body.get("users")
        return FanOutLikers(
            str(body["item"]),
            str(body.get("after") or ""),
            tuple(str(u) for u in users) if users is not None else None,
        )
    if not isinstance(body, dict) or body.get("gorse-cdc") != KIND:
        return None
    items = body.get("items") or {}
    return RefreshLiked(
        str(body["user"]),
        tuple(
            sorted((str(i), tuple(str(x) for x in v) if v is not None else None) for i, v in items.items())
        ),
        reread=body.get("reread") is True,
    )


class RefreshPublisher:
    """Puts refresh and fan-out records on the live stream. Entries Kinesis refuses (a
    partial FailedRecordCount: throttling, each refused entry has its ErrorCode) are put again,
    only they, with backoff, up to ``attempts`` times; then RefreshNotPublishedError: the plan
    is retried, and every call in it is idempotent (a plan tells at most fan_out_per_plan
    likers, so a retried plan repeats a bounded number of records)."""

    def __init__(
        self,
        kinesis: Any,
        stream: str,
        *,
        attempts: int = 8,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.published = 0
        self.refused = 0  # entries Kinesis refused (and were put again)

    async def publish(self, refreshes: Mapping[str, Mapping[str, Values]]) -> None:
        await self._put_all(
            [
                {"Data": encode_refresh(user, items), "PartitionKey": user}
                for user, items in sorted(refreshes.items())
            ]
        )

    async def tell_rewritten(self, users: Iterable[str]) -> None:
        """Tell each user's owner that another writer wrote the user's feedback or row (the
        reconcile's repair): it forgets what it remembers of them and reads them again. Put
        after the writes, on the user's own shard: read after every change it may have missed."""
        await self._put_all(
            [
                {"Data": encode_refresh(user, {}, reread=True), "PartitionKey": user}
                for user in sorted(set(users))
            ]
        )

    async def fan_out(self, requests: Iterable[FanOutLikers]) -> None:
        """Put fan-out records, each on its item's shard."""
        await self._put_all(
            [{"Data": encode_fan_out(r), "PartitionKey": r.item_id} for r in split_fan_out(requests)]
        )

    async def _put_all(self, entries: Sequence[dict[str, Any]]) -> None:
        chunk: list[dict[str, Any]] = []
        size = 0
        for e in entries:
            n = len(e["Data"]) + len(e["PartitionKey"])
            if chunk and (len(chunk) >= MAX_PUT or size + n > MAX_PUT_BYTES):
                await self._put(chunk)
                chunk, size = [], 0
            chunk.append(e)
            size += n
        if chunk:
            await self._put(chunk)

    async def _put(self, chunk: list[dict[str, Any]]) -> None:
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            resp = await self.kinesis.put_records(StreamName=self.stream, Records=chunk)
            if not int(resp.get("FailedRecordCount", 0)):
                self.published += len(chunk)
                return
            results = resp.get("Records") or []
            if len(results) == len(chunk):
                refused = [e for e, r in zip(chunk, results, strict=True) if r.get("ErrorCode")]
            else:  # no per-entry outcome: every entry may have been refused
                refused = chunk
            codes = Counter(str(r.get("ErrorCode")) for r in results if r.get("ErrorCode"))
            self.published += len(chunk) - len(refused)
            self.refused += len(refused)
            if attempt == self.attempts:
                raise RefreshNotPublishedError(
                    f"Kinesis refused {len(refused)} of {len(chunk)} records {attempt} times: {dict(codes)}"
                )
            log.info(
                "Kinesis refused %d of %d records (%s): putting only those again",
                len(refused),
                len(chunk),
                dict(codes),
                extra={"event": "refresh_refused"},
            )
            chunk = refused
            await self._sleep(delay * random.uniform(0.5, 1.0))  # jitter
            delay = min(delay * 2, self.max_backoff_s)


class RefreshNotPublishedError(RetriableError):
    """Kinesis kept refusing some records: the plan is retried (every call is idempotent)."""
