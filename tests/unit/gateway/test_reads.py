"""The read logic over an in-memory stand-in of Gorse's client (logic only; the real Gorse is
in tests/integration/gateway)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.problems import Problem
from gateway.reads import ReadConfig, Reads
from gorse_cdc.errors import GorsePermanentError, GorseRetriableError
from gorse_cdc.gorse.models import Feedback, Item


class MemoryGorse:
    def __init__(self) -> None:
        self.items = {
            f"m{i}": Item(f"m{i}", {"genres": ["Drama"]}, (), None, f"Movie {i}") for i in range(20)
        }
        self.feedback: dict[str, list[Feedback]] = {}
        self.cached: dict[str, list[str]] = {}
        self.popular: list[str] = []
        self.fail: Exception | None = None
        self.calls: list[str] = []

    async def user_feedback(self, user: str) -> list[Feedback]:
        self.calls.append("feedback")
        if self.fail:
            raise self.fail
        return self.feedback.get(user, [])

    async def recommend(self, user: str, n: int, category: Any = None) -> list[str]:
        self.calls.append("recommend")
        return self.cached.get(user, [])[:n]

    async def non_personalized(self, name: str, n: int, category: Any = None) -> list[str]:
        return self.popular[:n]

    async def latest(self, n: int, category: Any = None) -> list[str]:
        return sorted(self.items, reverse=True)[:n]

    async def get_item(self, item_id: str) -> Item | None:
        return self.items.get(item_id)


def reads(g: MemoryGorse, **cfg: Any) -> Reads:
    return Reads(g, ReadConfig(**cfg))  # type: ignore[arg-type]


async def test_a_new_user_gets_popular_then_latest() -> None:
    g = MemoryGorse()
    g.cached["new"] = ["m1", "m2"]  # Gorse's own fallback for a user it does not know
    row = await reads(g).recommend("new", 3, 0, None)
    assert row["source"] == "latest" and [i["id"] for i in row["items"]] == ["m9", "m8", "m7"]
    g.popular = ["m5", "m6"]
    row = await reads(g, cache_ttl_s=0).recommend("new2", 3, 0, None)
    assert row["source"] == "popular" and row["items"][0] == {
        "id": "m5", "title": "Movie 5", "genres": ["Drama"], "categories": [], "timestamp": None,
    }  # fmt: skip


async def test_a_user_with_a_like_gets_gorses_row_minus_the_items_acted_on() -> None:
    g = MemoryGorse()
    g.feedback["u"] = [Feedback("like", "u", "m1", 5)]
    g.cached["u"] = ["m1", "m2", "m3", "m4"]
    r = reads(g)
    row = await r.recommend("u", 5, 0, None)
    assert row["source"] == "personal" and [i["id"] for i in row["items"]] == ["m2", "m3", "m4"]
    r.acted("u", ["m3"])  # events just accepted through this gateway
    row = await r.recommend("u", 5, 0, None)
    assert [i["id"] for i in row["items"]] == ["m2", "m4"]
    assert (await r.recommend("u", 1, 1, None))["items"][0]["id"] == "m4"  # offset


async def test_a_user_with_only_plays_gets_the_fallback_not_gorses_latest() -> None:
    g = MemoryGorse()
    g.feedback["u"] = [Feedback("play", "u", "m9", 1)]
    g.cached["u"] = ["m8", "m7"]  # Gorse's own fallback (latest) for a user without likes
    row = await reads(g).recommend("u", 2, 0, None)
    assert row["source"] == "latest" and [i["id"] for i in row["items"]] == ["m8", "m7"]
    assert "recommend" not in g.calls


async def test_a_new_like_reads_gorses_row_again_at_once_else_the_row_is_cached() -> None:
    """Was: the row was cached for cache_ttl_s (30 s) whatever the user did, and a hand-written
    blend of item neighbours stood in for Gorse's hourly lists."""
    now = [0.0]
    g = MemoryGorse()
    g.feedback["u"] = [Feedback("like", "u", "m1", 5)]
    g.cached["u"] = ["m2", "m3"]
    r = Reads(g, ReadConfig(fresh_ttl_s=0.5, cache_ttl_s=30), clock=lambda: now[0])  # type: ignore[arg-type]
    await r.recommend("u", 5, 0, None)
    now[0] = 1.0
    await r.recommend("u", 5, 0, None)
    assert g.calls.count("recommend") == 1  # same feedback: the cached row
    g.feedback["u"].append(Feedback("like", "u", "m2", 5))
    g.cached["u"] = ["m5", "m6"]  # Gorse's answer to the new like
    now[0] = 2.0
    row = await r.recommend("u", 5, 0, None)
    assert g.calls.count("recommend") == 2 and [i["id"] for i in row["items"]] == ["m5", "m6"]


async def test_gorse_failures_become_clear_problems() -> None:
    g = MemoryGorse()
    g.fail = GorseRetriableError("GET", "/api/user/u/feedback", 503, "busy", 2.0)
    with pytest.raises(Problem) as e:
        await reads(g).recommend("u", 5, 0, None)
    assert e.value.status == 503 and e.value.headers["Retry-After"] == "2"
    g.fail = GorsePermanentError("GET", "/api/user/u/feedback", 400, "bad")
    with pytest.raises(Problem) as e:
        await reads(g).recommend("u", 5, 0, None)
    assert e.value.status == 502
    with pytest.raises(Problem) as e:
        await reads(MemoryGorse()).similar("nope", 5, 0, None)
    assert e.value.status == 404


async def test_the_feedback_is_read_again_after_fresh_ttl_only() -> None:
    now = [0.0]
    g = MemoryGorse()
    r = Reads(g, ReadConfig(fresh_ttl_s=0.5), clock=lambda: now[0])  # type: ignore[arg-type]
    await r.recommend("u", 5, 0, None)
    await r.recommend("u", 5, 0, None)
    assert g.calls.count("feedback") == 1
    now[0] = 0.6
    await r.recommend("u", 5, 0, None)
    assert g.calls.count("feedback") == 2


async def test_a_gorse_read_past_its_deadline_is_a_503_not_a_wait() -> None:
    """Was: a read waited as long as Gorse (or the client's queue) took, 30 s by default."""
    g = MemoryGorse()
    hang = asyncio.Event()

    async def hung(user: str) -> list[Feedback]:
        await hang.wait()
        return []

    g.user_feedback = hung  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(Problem) as e:
        await asyncio.wait_for(reads(g, deadline_s=0.1).recommend("u", 5, 0, None), 5)
    assert e.value.status == 503 and e.value.headers["Retry-After"] == "1"
    assert time.monotonic() - started < 1


def test_items_acted_on_are_forgotten_once_gorse_has_them() -> None:
    """Was: a user's recently acted items were never pruned (a heavy user's set only grew)."""
    now = [0.0]
    r = Reads(MemoryGorse(), ReadConfig(recent_ttl_s=60, recent_per_user=50), clock=lambda: now[0])  # type: ignore[arg-type]
    for step in range(1000):
        now[0] = step * 0.1
        r.acted("heavy", [f"m{step}"])
    assert len(r._recent["heavy"]) == 50  # bounded per user, the newest kept
    assert r._recently_acted("heavy") == {f"m{s}" for s in range(950, 1000)}
    now[0] += 61
    r.acted("other", ["x"])
    assert r._recently_acted("heavy") == set() and "heavy" not in r._recent
