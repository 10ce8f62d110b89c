"""A bounded LRU of the liked-labels source values of items (e.g. their genres), read from Gorse.

Invalidated by the item writes this worker sees; entries also expire after ``ttl_s`` so a
genre edit applied by *another* worker reaches this one within that time (the nightly
reconcile is the exact backstop). A fetch that started before an invalidation never stores
its (possibly old) answer.

Single flight: concurrent misses of one item share one GET. Without it every user whose labels
a batch recomputes fetched the same cold items at once (a bench at 1,000 ratings/s made ten
GETs per liked-labels computation, 56k in 40 s, saturating Gorse).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from consumers.sink.bulk_export import BulkExport
from gorse_cdc.gorse import GorseClient
from gorse_cdc.mapping import Mapper

Values = tuple[str, ...] | None  # None: the item does not exist in Gorse
BULK_READ_AT = 200  # misses in one plan worth one read of the items export instead of a GET each
ROWS_PER_ITEM = 25  # ... while the last export held at most this many rows per miss


class ItemLabelCache:
    def __init__(
        self,
        client: GorseClient,
        mapper: Mapper,
        *,
        max_items: int = 50_000,
        ttl_s: float = 60.0,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._mapper = mapper
        self._max = max_items
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Values, float]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Values]] = {}  # item -> the fetch new misses join
        self._sem = asyncio.Semaphore(concurrency)
        self._export = BulkExport(client, "items", at=BULK_READ_AT, rows_per_key=ROWS_PER_ITEM)
        self._reading: list[set[str]] = []  # per bulk read in progress: items invalidated meanwhile
        self._epoch = 0  # bumped by clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, item_id: str) -> tuple[bool, Values]:
        hit = self._entries.get(item_id)
        if hit is None:
            return False, None
        values, stored_at = hit
        if self._clock() - stored_at > self._ttl:
            del self._entries[item_id]
            return False, None
        self._entries.move_to_end(item_id)
        return True, values

    def put(self, item_id: str, values: Values) -> None:
        self.invalidate(item_id)
        self._store(item_id, values)

    def _store(self, item_id: str, values: Values) -> None:
        self._entries[item_id] = (values, self._clock())
        self._entries.move_to_end(item_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def invalidate(self, item_id: str) -> None:
        self._entries.pop(item_id, None)
        for dirty in self._reading:
            dirty.add(item_id)
        self._inflight.pop(item_id, None)  # later misses start a new fetch; this one stores nothing

    def clear(self) -> None:
        """Forget everything (this worker took shards: what it cached may predate edits whose
        refresh records their previous owner consumed). Fetches in flight store nothing."""
        self._entries.clear()
        self._inflight.clear()
        self._epoch += 1  # bulk reads in progress store nothing

    async def read_many(self, item_ids: Iterable[str]) -> None:
        """Cache many items at once from one read of Gorse's items export (the master's JSONL,
        streamed) instead of a GET each: when at least ``BULK_READ_AT`` of them are missing and
        the last export held at most ``ROWS_PER_ITEM`` rows per missing item (a full load into a
        catalogue of thousands: every item expires from the cache each TTL). Every item read is
        cached (up to the bound), a missing one not in the export as absent, as a GET would; an
        item invalidated while the read runs is not stored. A failure leaves the GETs to
        ``values`` and is not tried again."""
        missing = {i for i in item_ids if not self._get(i)[0]}
        if not self._export.worth(len(missing)):
            return
        dirty: set[str] = set()
        self._reading.append(dirty)
        epoch = self._epoch
        read: dict[str, Values] = {}

        def row(r: dict[str, Any]) -> None:
            read[r["ItemId"]] = tuple(self._mapper.item_label_values(r.get("Labels")))

        try:
            ok = await self._export.read(row)
        finally:
            self._reading.remove(dirty)
        if not ok or epoch != self._epoch:
            return
        for item_id in missing - read.keys():
            read[item_id] = None
        for item_id, values in list(read.items())[-self._max :]:
            if item_id not in dirty and item_id not in self._inflight:
                self._store(item_id, values)

    def _fetch(self, item_id: str) -> asyncio.Future[Values]:
        flight = self._inflight.get(item_id)
        if flight is None:
            flight = asyncio.ensure_future(self._load(item_id))
            self._inflight[item_id] = flight
            flight.add_done_callback(functools.partial(self._landed, item_id))
        return flight

    def _landed(self, item_id: str, flight: asyncio.Future[Values]) -> None:
        ok = not flight.cancelled() and flight.exception() is None  # (retrieved: never "unretrieved")
        if self._inflight.get(item_id) is not flight:
            return  # invalidated (or cleared) while in flight: its answer may be old
        del self._inflight[item_id]
        if ok:
            self._store(item_id, flight.result())

    async def _load(self, item_id: str) -> Values:
        async with self._sem:
            item = await self._client.get_item(item_id)
        return None if item is None else tuple(self._mapper.item_label_values(item.labels))

    def known(self, item_ids: Iterable[str]) -> dict[str, Values]:
        """The cached values of those items this worker knows (fresh entries only); no I/O."""
        out: dict[str, Values] = {}
        for i in item_ids:
            found, v = self._get(i)
            if found:
                out[i] = v
        return out

    async def values(self, item_ids: Iterable[str]) -> dict[str, Values]:
        out: dict[str, Values] = {}
        missing: list[str] = []
        for i in dict.fromkeys(item_ids):
            found, v = self._get(i)
            if found:
                out[i] = v
            else:
                missing.append(i)
        if missing:
            fetched = await asyncio.gather(*(asyncio.shield(self._fetch(i)) for i in missing))
            out.update(zip(missing, fetched, strict=True))
        return out
