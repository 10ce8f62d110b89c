"""GorseSink runs a write plan in WritePlan's phase order: entity deletes, items, feedback,
stale/deleted feedback, users. A fake Gorse client records the calls (logic only: the real
Gorse is exercised by the integration tests)."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.coalesce import WritePlan
from consumers.sink.gorse_sink import GorseSink
from consumers.wiring import build_mapper
from gorse_cdc.errors import GorseRetriableError
from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.settings import Settings


class RecordingGorse:
    """Answers like an empty Gorse and records (method, key) in call order."""

    batch_size = 100

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def _record(self, method: str, key: str) -> None:
        if method == self.fail:
            raise GorseRetriableError("PUT", "/api/x", 503, "injected")
        self.calls.append((method, key))

    async def delete_user(self, user_id: str) -> None:
        self._record("delete_user", user_id)

    async def delete_item(self, item_id: str) -> None:
        self._record("delete_item", item_id)

    async def upsert_items(self, items: Any) -> None:
        for i in items:
            self._record("upsert_items", i.item_id)

    async def put_feedback(self, rows: Any) -> None:
        for f in rows:
            self._record("put_feedback", f"{f.feedback_type}/{f.user_id}/{f.item_id}")

    async def delete_feedback(self, user_id: str, item_id: str, ftype: str | None = None) -> None:
        self._record("delete_feedback", f"{ftype or '*'}/{user_id}/{item_id}")

    async def upsert_users(self, users: Any) -> None:
        for u in users:
            self._record("upsert_users", u.user_id)

    async def patch_user(self, user_id: str, **_: Any) -> None:
        self._record("patch_user", user_id)

    async def item_feedback(self, item_id: str, ftype: str | None = None) -> list[Feedback]:
        return []

    async def user_feedback(self, user_id: str, ftype: str | None = None) -> list[Feedback]:
        return []

    async def get_item(self, item_id: str) -> Item | None:
        return None

    async def get_user(self, user_id: str) -> User | None:
        return None


def plan() -> WritePlan:
    return WritePlan(
        delete_users=["u-gone"],
        delete_items=["m-gone"],
        upsert_items={"m1": Item("m1", ["Drama"], comment="Title")},
        upsert_users={"u1": User("u1", {"age": 30})},
        put_feedback={("u1", "m1"): Feedback("like", "u1", "m1", 5.0)},
        stale_feedback=[("unlike", "u1", "m1")],
        delete_feedback=[("u2", "m2")],
        liked_users={"u1"},
    )


def phase_order(calls: list[tuple[str, str]]) -> list[str]:
    return list(dict.fromkeys(m for m, _ in calls))


async def test_phases_run_in_the_plans_order() -> None:
    gorse = RecordingGorse()
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    await sink.write(plan())
    assert phase_order(gorse.calls) == [
        "delete_user",
        "delete_item",
        "upsert_items",
        "put_feedback",
        "delete_feedback",
        "upsert_users",
    ]
    assert ("delete_feedback", "unlike/u1/m1") in gorse.calls  # the stale type after the put
    assert ("delete_feedback", "*/u2/m2") in gorse.calls


async def test_a_failed_phase_stops_the_later_ones_and_the_plan_runs_again_whole() -> None:
    gorse = RecordingGorse(fail="put_feedback")
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    with pytest.raises(GorseRetriableError):
        await sink.write(plan())
    assert "delete_feedback" not in phase_order(gorse.calls)
    assert "upsert_users" not in phase_order(gorse.calls)
    gorse.fail = None
    gorse.calls.clear()
    await sink.write(plan())  # idempotent calls: the retry is the same plan from the start
    assert phase_order(gorse.calls)[0] == "delete_user"
    assert "upsert_users" in phase_order(gorse.calls)
