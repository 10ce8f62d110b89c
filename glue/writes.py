"""Gorse writes for the repair: rate limited, retried, chunked, through the shared client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import orjson

from gorse_cdc.errors import FatalError, GorseRetriableError
from gorse_cdc.gorse import Feedback, GorseClient, Item, User

T = TypeVar("T")


class RateLimiter:
    """At most ``per_s`` writes per second on average (None: unlimited). A batch of n writes
    is let through at once and pushes the next permit n/per_s seconds later."""

    def __init__(
        self,
        per_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_s is not None and per_s <= 0:
            raise ValueError("max writes per second must be > 0")
        self.per_s = per_s
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def acquire(self, n: int) -> None:
        if self.per_s is None or n <= 0:
            return
        now = self._clock()
        wait = self._next - now
        self._next = max(self._next, now) + n / self.per_s
        if wait > 0:
            await self._sleep(wait)


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int = 5, base_s: float = 0.2) -> T:
    """Retry retriable Gorse errors with exponential backoff; then stop the job (FatalError)."""
    for attempt in range(attempts):
        try:
            return await call()
        except GorseRetriableError as e:
            if attempt == attempts - 1:
                raise FatalError(f"Gorse kept failing, giving up: {e}") from e
            await asyncio.sleep(e.retry_after_s or base_s * 2**attempt)
    raise AssertionError("unreachable")


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
