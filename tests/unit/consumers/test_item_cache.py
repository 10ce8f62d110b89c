"""The item-label cache: concurrent misses share one GET; an invalidation during a GET keeps
its (possibly old) answer out of the cache; many cold items come from one export, an edit
during it winning. A fake client (logic only)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

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


class ExportingGorse:
    """GET /api/item and the items export over one catalogue; an edit can land mid-export."""

    def __init__(self, n: int) -> None:
        self.items = {f"m{k:04}": ["Drama" if k % 2 else "Comedy"] for k in range(n)}
        self.gets = 0
        self.exports = 0
        self.mid_export: Any = None  # called once, halfway through the export

    async def get_item(self, item_id: str) -> Item | None:
        self.gets += 1
        genres = self.items.get(item_id)
        return None if genres is None else Item(item_id, {"genres": genres})

    async def export_lines(self, what: str) -> Any:
        assert what == "items"
        self.exports += 1
        rows = sorted(self.items.items())
        for k, (item_id, genres) in enumerate(rows):
            if k == len(rows) // 2 and self.mid_export is not None:
                self.mid_export()
            yield orjson.dumps({"ItemId": item_id, "Labels": {"genres": genres}})


async def test_many_cold_items_are_read_from_one_export_and_an_edit_meanwhile_wins() -> None:
    g = ExportingGorse(400)
    cache = ItemLabelCache(g, build_mapper(Settings()))  # type: ignore[arg-type]
    edited = "m0390"  # after the export's midpoint: its old row is still to come

    def edit() -> None:  # this worker writes the item while the export streams
        g.items[edited] = ["Horror"]
        cache.put(edited, ("Horror",))

    g.mid_export = edit
    wanted = [*g.items, "gone"]  # one that Gorse does not hold
    await cache.read_many(wanted)
    values = await cache.values(wanted)
    assert (g.exports, g.gets) == (1, 0)
    assert values[edited] == ("Horror",) and values["gone"] is None
    assert values["m0001"] == ("Drama",) and values["m0002"] == ("Comedy",)


async def test_a_large_catalogue_keeps_one_get_per_item() -> None:
    g = ExportingGorse(300)
    cache = ItemLabelCache(g, build_mapper(Settings()))  # type: ignore[arg-type]
    cache._export.seen(1_000_000)  # the last export: far more rows than the misses
    await cache.read_many(list(g.items))
    await cache.values(list(g.items))
    assert (g.exports, g.gets) == (0, 300)
