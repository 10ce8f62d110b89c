"""The read logic over an in-memory stand-in of Gorse's client (logic only; the real Gorse is
in tests/integration/gateway)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
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
        self.session: list[str] = []
        self.neighbors: dict[str, list[tuple[str, float]]] = {}
        self.popular: list[str] = []
        self.fail: Exception | None = None
        self.calls: list[str] = []

    async def user_feedback(self, user: str) -> list[Feedback]:
        self.calls.append("feedback")
        if self.fail:
            raise self.fail
        return self.feedback.get(user, [])

    async def recommend(self, user: str, n: int, category: Any = None) -> list[str]:
        return self.cached.get(user, [])[:n]

    async def session_recommend(self, fb: Any, n: int) -> list[str]:
        return self.session[:n]

    async def item_neighbor_scores(self, item: str, n: int) -> list[tuple[str, float]]:
        if item not in self.items:
            raise GorsePermanentError("GET", f"/api/item/{item}/neighbors/", 404, "item not found")
        return self.neighbors.get(item, [])[:n]

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


async def test_acted_items_leave_and_the_latest_likes_lead() -> None:
    g = MemoryGorse()
    g.feedback["u"] = [Feedback("like", "u", "m1", 5)]
    g.cached["u"] = ["m1", "m2", "m3", "m4"]
    g.session = ["m10", "m2", "m11"]
    r = reads(g)
    row = await r.recommend("u", 5, 0, None)
    assert [i["id"] for i in row["items"]] == ["m10", "m2", "m11", "m3", "m4"]
    r.acted("u", ["m10", "m3"])  # events just accepted through this gateway
    row = await r.recommend("u", 5, 0, None)
    assert [i["id"] for i in row["items"]] == ["m2", "m11", "m4"]
    assert (await r.recommend("u", 1, 1, None))["items"][0]["id"] == "m11"  # offset


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


async def test_without_a_session_answer_the_neighbours_of_the_latest_likes_lead() -> None:
    g = MemoryGorse()
    t = lambda h: datetime(2026, 11, 28, h, tzinfo=UTC)  # noqa: E731
    g.feedback["u"] = [
        Feedback("like", "u", "m1", 5, t(1)),
        Feedback("like", "u", "m2", 5, t(2)),
        Feedback("like", "u", "gone", 5, t(3)),
    ]
    g.cached["u"] = ["m3", "m4", "m5"]
    g.neighbors = {"m1": [("m7", 0.5), ("m8", 0.4)], "m2": [("m8", 0.3), ("m9", 0.6), ("m1", 0.9)]}
    row = await reads(g).recommend("u", 6, 0, None)
    # newest like first ("gone": no neighbours), m2 weighs 0.7, m1 0.49: m8 0.406, m9 0.42, m7 0.245
    # (m1 is liked: excluded), interleaved with the cached list
    assert [i["id"] for i in row["items"]] == ["m9", "m3", "m8", "m4", "m7", "m5"]


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


async def test_a_slow_session_answer_leaves_the_cached_row() -> None:
    g = MemoryGorse()
    g.feedback["u"] = [Feedback("like", "u", "m1", 5)]
    g.cached["u"] = ["m2", "m3"]

    async def slow(fb: Any, n: int) -> list[str]:
        await asyncio.sleep(10)
        return []

    g.session_recommend = slow  # type: ignore[method-assign]
    r = reads(g, deadline_s=0.1)
    rows = await asyncio.wait_for(asyncio.gather(*(r.recommend("u", 5, 0, None) for _ in range(3))), 5)
    assert [[i["id"] for i in row["items"]] for row in rows] == [["m2", "m3"]] * 3


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
