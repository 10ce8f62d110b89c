"""Gorse's own recommendations are live and personal (ARCHITECTURE invariant 10), on the stack's
real Gorse with docker/gorse/config.toml: `[recommend.ranker] type = "none"` runs item-to-item on
the user's latest likes at request time.

Both tests fail on the config before it (ranker "fm", lists rebuilt in the master's hourly loop):
a new user's list stays the Latest fallback after the like, for an hour."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import pytest

from gorse_cdc.gorse import Feedback, GorseClient
from gorse_cdc.gorse.models import Item
from gorse_cdc.settings import Settings

# The master computes a new item's neighbour list in its next loop (every fit_period, 1 min),
# which on a busy shared stack can take a minute itself.
NEIGHBOURS_WITHIN_S = 240.0
FILMS = 110


async def _world(g: GorseClient, tag: str) -> tuple[list[str], list[str]]:
    """Two tastes nobody else shares: fans of the A films like only A films, fans of B only B.
    Returns (A, B) once Gorse has computed the neighbours of A's first film and B's first film.

    Each side has more films than a neighbour list holds (recommend.cache_size, 100), all linked
    by common fans: Gorse's neighbour search returns cache_size items whatever their distance,
    an unrelated item scoring 1/(1 + 1) = 0.5 against ~0.51 for a related one (logics/
    item_to_item.go), so in a smaller world unrelated items pad the lists and, summed over
    several likes, can outweigh the related ones."""
    a, b = [f"{tag}-a{i}" for i in range(FILMS)], [f"{tag}-b{i}" for i in range(FILMS)]
    # The films come with their likes (auto_insert_item: no timestamp, the end of Latest); one
    # POST /api/items of 220 films updates Gorse's cache item by item (> 30 s on a busy stack).
    # A few new releases lead Latest, whatever else the shared Gorse holds.
    now = datetime.now(UTC)
    rng = random.Random(tag)
    fans = [
        Feedback("like", f"{tag}-fan{side}{u}", item, 5, now)
        for side, films in (("a", a), ("b", b))
        for u in range(30)
        for item in rng.sample(films, 40)
    ]
    deadline = time.monotonic() + NEIGHBOURS_WITHIN_S
    while True:
        # written again when another test emptied the shared Gorse meanwhile (reset_gorse)
        if not await g.user_feedback(fans[-1].user_id):
            await g.upsert_items([Item(f"{tag}-new{i}", None, (), now, f"New {i}") for i in range(6)])
            await g.put_feedback(fans)
        na, nb = await g.item_neighbors(a[0], 5), await g.item_neighbors(b[0], 5)
        if na and nb:
            return a, b
        if time.monotonic() > deadline:
            pytest.fail(f"Gorse computed no neighbours for {a[0]} / {b[0]} in {NEIGHBOURS_WITHIN_S:.0f} s")
        await asyncio.sleep(2)


async def test_a_like_shapes_gorses_own_list_within_a_second(settings: Settings, stack: object) -> None:
    tag = f"live{random.randrange(10**6)}"
    async with GorseClient.from_settings(settings) as g:
        a, b = await _world(g, tag)
        user = f"{tag}-viewer"
        # first like: an A film; the list is A's films, personal at once (no fit, no loop)
        await g.put_feedback([Feedback("like", user, a[0], 5, datetime.now(UTC))])
        started = time.monotonic()
        while True:
            top = await g.recommend(user, 5)
            if top and set(top) <= set(a):
                break
            assert time.monotonic() - started < 1.0, f"not A's films a second after the like: {top}"
            await asyncio.sleep(0.05)
        # then two B films: B leads the list within a second of the like
        await g.put_feedback([Feedback("like", user, i, 5, datetime.now(UTC)) for i in b[:2]])
        started = time.monotonic()
        while True:
            top = await g.recommend(user, 3)
            if top and set(top) <= set(b):
                break
            assert time.monotonic() - started < 1.0, f"B does not lead a second after the like: {top}"
            await asyncio.sleep(0.05)
        assert a[0] not in await g.recommend(user, 50) and b[0] not in await g.recommend(user, 50)


async def test_a_user_with_a_like_gets_a_list_that_is_not_latest(settings: Settings, stack: object) -> None:
    tag = f"live{random.randrange(10**6)}"
    async with GorseClient.from_settings(settings) as g:
        a, _ = await _world(g, tag)
        user = f"{tag}-viewer"
        await g.put_feedback([Feedback("like", user, a[3], 5, datetime.now(UTC))])
        got = await g.recommend(user, 10)
        latest = [i for i in await g.latest(11) if i != a[3]][:10]
        assert got and got != latest
        assert set(got[:3]) <= set(a), got  # the liked film's own neighbours lead
