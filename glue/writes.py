"""Gorse writes for the repair: rate limited (gorse_cdc.retry.RateLimiter, built by the job),
retried, chunked, through the shared client.

Each chunk that wrote users or feedback then tells those users' owners (``tell``: a reread
refresh record on each user's own shard, gorse_cdc.refresh_records): the live consumer
remembers what it wrote of its users (remembered likes and demographics) and would otherwise
recompute a repaired user's liked labels from a memory that missed the repair."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import orjson

from gorse_cdc.errors import FatalError
from gorse_cdc.gorse import Feedback, GorseClient, Item, User
from gorse_cdc.retry import ErrorClass, RetryPolicy, classify, retry_async

T = TypeVar("T")
# A few tries, then the job stops: the nightly run is repeated, nothing is lost. With full
# jitter the mean pause is half the ceiling: base 0.4 s keeps the mean pauses of the fixed
# 0.2, 0.4, 0.8, 1.6 s used before. The cap bounds a Gorse Retry-After hint too.
REPAIR_RETRY = RetryPolicy(base_s=0.4, cap_s=30.0, max_attempts=5)


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy = REPAIR_RETRY) -> T:
    """Retry what gorse_cdc.retry calls retriable; once the tries are spent, stop the job
    (FatalError). Anything else (e.g. GorsePermanentError) propagates at once."""
    try:
        return await retry_async(call, policy=policy)
    except Exception as e:
        if classify(e) is ErrorClass.RETRIABLE:
            raise FatalError(f"Gorse kept failing, giving up: {e}") from e
        raise


class GorseWriter:
    """Applies one chunk of a repair phase: upsert (users/items), put (feedback), delete."""

    def __init__(
        self,
        client: GorseClient,
        concurrency: int = 8,
        tell: Callable[[Iterable[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self._sem = asyncio.Semaphore(concurrency)
        self._tell = tell  # after the writes: users written behind their owner's back
        self.told = 0

    async def _told(self, users: Iterable[str]) -> None:
        ids = sorted(set(users))
        if self._tell is not None and ids:
            await with_retries(lambda: self._tell(ids))  # type: ignore[misc]
            self.told += len(ids)

    async def upsert(self, kind: str, entities: Sequence[str]) -> None:
        docs = [orjson.loads(e) for e in entities]
        if kind == "users":
            users = [User.from_json(d) for d in docs]
            await with_retries(lambda: self.client.upsert_users(users))
            await self._told(u.user_id for u in users)
        elif kind == "items":
            items = [Item.from_json(d) for d in docs]
            await with_retries(lambda: self.client.upsert_items(items))
        else:
            fbs = [Feedback.from_json(d) for d in docs]
            await with_retries(lambda: self.client.put_feedback(fbs))
            await self._told(f.user_id for f in fbs)

    async def _delete_one(self, kind: str, key: list[str]) -> None:
        async with self._sem:
            if kind == "users":
                await with_retries(lambda: self.client.delete_user(key[0]))
            elif kind == "items":
                await with_retries(lambda: self.client.delete_item(key[0]))
            else:
                await with_retries(lambda: self.client.delete_feedback(key[1], key[2], key[0]))

    async def delete(self, kind: str, keys: Sequence[list[str]]) -> None:
        await asyncio.gather(*(self._delete_one(kind, k) for k in keys))
        if kind == "users":
            await self._told(k[0] for k in keys)
        elif kind == "feedback":
            await self._told(k[1] for k in keys)
