"""The item-label cache: concurrent misses share one GET; an invalidation during a GET keeps
its (possibly old) answer out of the cache. A fake client (logic only)."""

from __future__ import annotations

import asyncio

from consumers.sink.item_cache import ItemLabelCache
from consumers.wiring import build_mapper
from gorse_cdc.gorse.models import Item
from gorse_cdc.settings import Settings


class GatedGorse:
    def __init__(self) -> None:
        self.gets = 0
        self.gate = asyncio.Event()
        self.genres = {"m1": ["Drama"]}

    async def get_item(self, item_id: str) -> Item | None:
        self.gets += 1
        await self.gate.wait()
        return Item(item_id, {"genres": list(self.genres[item_id])}, comment="T")


async def test_concurrent_misses_of_one_item_share_one_get() -> None:
    gorse = GatedGorse()
    cache = ItemLabelCache(gorse, build_mapper(Settings()))  # type: ignore[arg-type]
    readers = [asyncio.create_task(cache.values(["m1"])) for _ in range(50)]
    await asyncio.sleep(0)
    gorse.gate.set()
    answers = await asyncio.gather(*readers)
    assert gorse.gets == 1
    assert all(a == {"m1": ("Drama",)} for a in answers)
    assert cache.known(["m1"]) == {"m1": ("Drama",)}


async def test_a_get_in_flight_during_an_invalidation_stores_nothing_and_later_misses_fetch_again() -> None:
    gorse = GatedGorse()
    cache = ItemLabelCache(gorse, build_mapper(Settings()))  # type: ignore[arg-type]
    early = asyncio.create_task(cache.values(["m1"]))
    await asyncio.sleep(0)
    gorse.genres["m1"] = ["Comedy"]  # edited while the first GET is in flight (its answer: old)
    cache.invalidate("m1")
    late = asyncio.create_task(cache.values(["m1"]))
    await asyncio.sleep(0)
    gorse.gate.set()
    await early
    assert await late == {"m1": ("Comedy",)}
    assert gorse.gets == 2
    assert cache.known(["m1"]) == {"m1": ("Comedy",)}


async def test_a_cancelled_reader_does_not_cancel_the_shared_get() -> None:
    gorse = GatedGorse()
    cache = ItemLabelCache(gorse, build_mapper(Settings()))  # type: ignore[arg-type]
    first = asyncio.create_task(cache.values(["m1"]))
    second = asyncio.create_task(cache.values(["m1"]))
    await asyncio.sleep(0)
    first.cancel()
    gorse.gate.set()
    assert await second == {"m1": ("Drama",)}
    assert gorse.gets == 1
