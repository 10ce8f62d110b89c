"""A small TTL + LRU cache for Gorse reads, counting hits and misses. The clock is injected.

Concurrent misses of one key share one load (no stampede on a popular key).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    def __init__(
        self,
        name: str,
        ttl_s: float,
        max_entries: int,
        *,
        on_result: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._on_result = on_result
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[V]] = {}

    def get(self, key: Hashable) -> tuple[bool, V | None]:
        entry = self._data.get(key)
        if entry is not None and self._clock() - entry[0] < self.ttl_s:
            self._data.move_to_end(key)
            return True, entry[1]
        if entry is not None:
            del self._data[key]
        return False, None

    def fresh(self, key: Hashable) -> bool:
        """Held and not expired (no counting, no reordering)."""
        entry = self._data.get(key)
        return entry is not None and self._clock() - entry[0] < self.ttl_s

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl_s <= 0:
            return
        self._data[key] = (self._clock(), value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def invalidate(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if self._on_result is not None:
            self._on_result(self.name, hit)

    async def get_or_load(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        found, value = self.get(key)
        if found:
            self._count(True)
            return value  # type: ignore[return-value]
        pending = self._loading.get(key)
        if pending is not None:
            self._count(True)
            return await asyncio.shield(pending)
        self._count(False)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(value)
        self.put(key, value)
        return value

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
