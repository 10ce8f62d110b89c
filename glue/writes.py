"""Gorse writes for the repair: rate limited (gorse_cdc.retry.RateLimiter, built by the job),
retried, chunked, through the shared client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
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

    def __init__(self, client: GorseClient, concurrency: int = 8) -> None:
        self.client = client
        self._sem = asyncio.Semaphore(concurrency)

    async def upsert(self, kind: str, entities: Sequence[str]) -> None:
        docs = [orjson.loads(e) for e in entities]
        if kind == "users":
            users = [User.from_json(d) for d in docs]
            await with_retries(lambda: self.client.upsert_users(users))
        elif kind == "items":
            items = [Item.from_json(d) for d in docs]
            await with_retries(lambda: self.client.upsert_items(items))
        else:
            fbs = [Feedback.from_json(d) for d in docs]
            await with_retries(lambda: self.client.put_feedback(fbs))

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
