"""GorseSink runs a write plan in WritePlan's phase order: entity deletes, items, feedback,
stale/deleted feedback, users. A fake Gorse client records the calls (logic only: the real
Gorse is exercised by the integration tests)."""

from __future__ import annotations

import asyncio
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
        self.likers: dict[str, list[str]] = {}  # item -> users who liked it
        self.users: dict[str, User] = {}
        self.items: dict[str, Item] = {}
        self.patched: dict[str, Any] = {}
        self.written_users: dict[str, User] = {}

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
            self.items[i.item_id] = i

    async def put_feedback(self, rows: Any) -> None:
        for f in rows:
            self._record("put_feedback", f"{f.feedback_type}/{f.user_id}/{f.item_id}")

    async def delete_feedback(self, user_id: str, item_id: str, ftype: str | None = None) -> None:
        self._record("delete_feedback", f"{ftype or '*'}/{user_id}/{item_id}")

    async def upsert_users(self, users: Any) -> None:
        for u in users:
            self._record("upsert_users", u.user_id)
            self.written_users[u.user_id] = u

    async def patch_user(self, user_id: str, labels: Any = None, **_: Any) -> None:
        self._record("patch_user", user_id)
        self.patched[user_id] = labels

    async def item_feedback(self, item_id: str, ftype: str | None = None) -> list[Feedback]:
        return [Feedback("like", u, item_id) for u in self.likers.get(item_id, [])]

    async def user_feedback(self, user_id: str, ftype: str | None = None) -> list[Feedback]:
        return [Feedback("like", user_id, i) for i, users in self.likers.items() if user_id in users]

    async def get_item(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    async def get_user(self, user_id: str) -> User | None:
        return self.users.get(user_id)


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


def genre_edit(genres: list[str]) -> WritePlan:
    return WritePlan(
        upsert_items={"m1": Item("m1", {"genres": genres}, comment="Title")},
        put_feedback={("u9", "m9"): Feedback("like", "u9", "m9", 5.0)},
    )


async def test_a_genre_edit_whose_first_apply_fails_still_refreshes_the_likers() -> None:
    gorse = RecordingGorse(fail="put_feedback")
    gorse.likers["m1"] = ["fan"]
    gorse.users["fan"] = User("fan", {"age": 30})
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    await sink.write(WritePlan(upsert_items={"m1": Item("m1", {"genres": ["Drama"]}, comment="Title")}))
    gorse.calls.clear()
    with pytest.raises(GorseRetriableError):
        await sink.write(genre_edit(["Comedy"]))  # the item is written, then the plan fails
    assert ("upsert_items", "m1") in gorse.calls
    gorse.fail = None
    gorse.calls.clear()
    await sink.write(genre_edit(["Comedy"]))  # the retry
    assert ("patch_user", "fan") in gorse.calls
    assert gorse.patched["fan"]["liked_genres"] == ["Comedy"]  # the refresh read the new genres
    gorse.calls.clear()
    await sink.write(genre_edit(["Comedy"]))  # known and unchanged now: no refresh
    assert ("patch_user", "fan") not in gorse.calls


async def test_an_item_this_worker_does_not_know_refreshes_its_likers() -> None:
    """After a restart the cache is cold: the item may have changed before the crash (Gorse
    already holds the new genres, the likers were not refreshed yet)."""
    gorse = RecordingGorse()
    gorse.items["m1"] = Item("m1", {"genres": ["Comedy"]}, comment="Title")
    gorse.likers["m1"] = ["fan"]
    gorse.users["fan"] = User("fan", {"age": 30})
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    await sink.write(genre_edit(["Comedy"]))
    assert ("patch_user", "fan") in gorse.calls


async def test_remembered_demographics_expire_so_a_repair_is_read_back() -> None:
    from consumers.sink.item_cache import ItemLabelCache
    from consumers.sink.liked import LikedLabelsWriter
    from tests.unit.consumers.fakes import ManualClock

    gorse = RecordingGorse()
    clock = ManualClock()
    mapper = build_mapper(Settings())
    cache = ItemLabelCache(gorse, mapper)  # type: ignore[arg-type]
    writer = LikedLabelsWriter(gorse, mapper, cache, ttl_s=60, clock=clock)  # type: ignore[arg-type]
    await writer.write(["u1"], {"u1": User("u1", {"age": 30})})
    gorse.users["u1"] = User("u1", {"age": 31})  # a repair by the reconcile
    clock.advance(10)
    await writer.write(["u1"], {})
    assert writer._remembered("u1") == User("u1", {"age": 30})  # within the TTL: remembered
    clock.advance(61)
    assert writer._remembered("u1") is None
    written: list[User] = []

    async def capture(users: Any) -> None:
        written.extend(users)

    gorse.upsert_users = capture  # type: ignore[method-assign]
    await writer.write(["u1"], {})
    assert written and written[0].labels is not None and written[0].labels["age"] == 31


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[dict[str, dict[str, Any]]] = []

    async def publish(self, refreshes: Any) -> None:
        self.published.append({u: dict(items) for u, items in refreshes.items()})


async def test_with_a_publisher_likers_are_told_through_their_own_shard_never_written_here() -> None:
    gorse = RecordingGorse()
    gorse.likers["m1"] = ["fan", "other"]
    gorse.users["fan"] = User("fan", {"age": 30})
    publisher = RecordingPublisher()
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4, publisher=publisher)  # type: ignore[arg-type]
    await sink.write(WritePlan(upsert_items={"m1": Item("m1", {"genres": ["Drama"]}, comment="T")}))
    assert publisher.published == [{"fan": {"m1": ("Drama",)}, "other": {"m1": ("Drama",)}}]
    assert not [c for c in gorse.calls if c[0] in ("patch_user", "upsert_users")]
    await sink.write(WritePlan(delete_items=["m1"]))  # a deleted item: its likers told too
    assert publisher.published[-1] == {"fan": {"m1": None}, "other": {"m1": None}}


async def test_a_refresh_record_recomputes_its_user_with_the_values_it_carries() -> None:
    from consumers.coalesce import coalesce
    from gorse_cdc.refresh_records import decode_refresh, encode_refresh

    gorse = RecordingGorse()
    gorse.likers["m1"] = ["fan"]
    gorse.users["fan"] = User("fan", {"age": 30})
    gorse.items["m1"] = Item("m1", {"genres": ["Old"]}, comment="T")
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    await sink.cache.values(["m1"])  # this worker cached the old genres
    gorse.items["m1"] = Item("m1", {"genres": ["New", "Noir"]}, comment="T")  # edited elsewhere
    op = decode_refresh(encode_refresh("fan", {"m1": ("New", "Noir")}))
    assert op is not None and decode_refresh(b'{"metadata": {}}') is None
    await sink.write(coalesce([op]))
    assert ("upsert_users", "fan") in gorse.calls
    assert gorse.written_users["fan"].labels == {"age": 30, "liked_genres": ["New", "Noir"]}  # not Old
    assert sink.cache.known({"m1": None}) == {"m1": ("New", "Noir")}  # read from Gorse


async def test_a_value_carried_by_a_refresh_record_is_never_cached() -> None:
    """Records of different users' shards are consumed out of order: an older told value must
    not replace what Gorse holds."""
    from consumers.coalesce import coalesce
    from gorse_cdc.refresh_records import decode_refresh, encode_refresh

    gorse = RecordingGorse()
    gorse.likers["m1"] = ["fan"]
    gorse.users["fan"] = User("fan", {"age": 30})
    gorse.items["m1"] = Item("m1", {"genres": ["Newest"]}, comment="T")
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    op = decode_refresh(encode_refresh("fan", {"m1": ("Older",)}))
    assert op is not None
    await sink.write(coalesce([op]))
    assert gorse.written_users["fan"].labels == {"age": 30, "liked_genres": ["Newest"]}


def test_an_empty_item_cache_passed_in_is_the_one_used() -> None:
    """A regression: an empty cache is falsy (it has a length), and ``cache or default``
    replaced the configured one (its TTL) with a default one."""
    from consumers.sink.item_cache import ItemLabelCache

    gorse = RecordingGorse()
    mapper = build_mapper(Settings())
    cache = ItemLabelCache(gorse, mapper, ttl_s=2.0)  # type: ignore[arg-type]
    assert len(cache) == 0
    assert GorseSink(gorse, mapper, cache=cache).cache is cache  # type: ignore[arg-type]


async def test_an_edit_is_told_again_after_the_ttl_only_to_users_who_liked_it_since() -> None:
    from tests.unit.consumers.fakes import ManualClock

    gorse = RecordingGorse()
    gorse.likers["m1"] = ["early"]
    publisher, clock = RecordingPublisher(), ManualClock()
    sink = GorseSink(
        gorse,  # type: ignore[arg-type]
        build_mapper(Settings()),
        publisher=publisher,  # type: ignore[arg-type]
        retell_after_s=61,
        clock=clock,
    )
    await sink.write(WritePlan(upsert_items={"m1": Item("m1", {"genres": ["Drama"]}, comment="T")}))
    assert publisher.published == [{"early": {"m1": ("Drama",)}}]
    gorse.likers["m1"] = ["early", "late"]  # liked meanwhile, on a worker with an older copy
    clock.advance(30)
    assert await sink.retell_due() == 0  # not yet
    clock.advance(32)
    assert await sink.retell_due() == 1
    assert publisher.published[-1] == {"late": {"m1": ("Drama",)}}
    assert await sink.retell_due() == 0  # told once


async def test_many_stale_types_of_one_user_cost_one_read_and_only_the_deletes_that_exist() -> None:
    gorse = RecordingGorse()
    gorse.likers = {"m1": ["u1"], "m3": ["u1"]}  # u1 holds like/m1 and like/m3 before the plan
    items = [f"m{i}" for i in range(1, 6)]
    sink = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    await sink.write(
        WritePlan(
            put_feedback={("u1", i): Feedback("unlike", "u1", i, 2.0) for i in items},
            stale_feedback=[("like", "u1", i) for i in items],
            delete_feedback=[("u2", "m9")],
        )
    )
    deletes = sorted(k for m, k in gorse.calls if m == "delete_feedback")
    assert deletes == ["*/u2/m9", "like/u1/m1", "like/u1/m3"]


def test_stale_keys_are_read_first_only_for_users_with_many_and_no_future_timestamps() -> None:
    from datetime import UTC, datetime, timedelta

    from consumers.sink.stale import split

    now = datetime(2026, 1, 1, tzinfo=UTC)
    future = Feedback("unlike", "f", "a", 1.0, timestamp=now + timedelta(days=1))
    stale = [("like", "few", "a")] + [("like", "many", x) for x in "abc"] + [("like", "f", x) for x in "abc"]
    blind, checked = split(stale, {("f", "a"): future}, now)
    assert checked == {"many": [("like", "many", x) for x in "abc"]}
    assert sorted(blind) == sorted([("like", "few", "a")] + [("like", "f", x) for x in "abc"])


async def test_a_full_loads_retells_read_a_bounded_number_of_items_a_tick() -> None:
    """A full load edits every item at once; their retells are read at most
    ``retell_items_per_tick`` items a tick (each tick used to read every due item's likers),
    and every item is told in the end."""
    from tests.unit.consumers.fakes import ManualClock

    gorse = RecordingGorse()
    reads: list[str] = []
    inner = gorse.item_feedback

    async def item_feedback(item_id: str, ftype: str | None = None) -> list[Feedback]:
        reads.append(item_id)
        return await inner(item_id, ftype)

    gorse.item_feedback = item_feedback  # type: ignore[method-assign]
    publisher, clock = RecordingPublisher(), ManualClock()
    sink = GorseSink(gorse, build_mapper(Settings()), publisher=publisher, retell_after_s=61, clock=clock)  # type: ignore[arg-type]
    items = {f"m{n:03}": Item(f"m{n:03}", {"genres": ["Drama"]}, comment="T") for n in range(250)}
    await sink.write(WritePlan(upsert_items=items))
    for i in items:
        gorse.likers[i] = ["late"]  # liked after the edit, on a worker with an older copy
    clock.advance(62)
    reads.clear()
    told = 0
    for _ in range(3):
        told += await sink.retell_due()
        assert len(reads) <= 100
        reads.clear()
    assert await sink.retell_due() == 0 and not reads
    told_items = {i for p in publisher.published for liked in p.values() for i in liked}
    assert set(items) <= told_items and told == 3


async def test_a_retell_outage_backs_off_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """While Gorse is down the retell loop doubles its wait (to a cap) and warns once, then
    once more when it works again; it used to warn every second for the whole outage."""
    sink = GorseSink(RecordingGorse(), build_mapper(Settings()))  # type: ignore[arg-type]
    outcomes = [GorseRetriableError("GET", "/api/item/x/feedback", 503, "down")] * 6 + [0, 0]
    waits: list[float] = []

    async def retell_due() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def sleep(s: float) -> None:
        waits.append(s)
        if not outcomes:
            raise asyncio.CancelledError

    sink.retell_due = retell_due  # type: ignore[method-assign]
    with (
        caplog.at_level("WARNING", logger="consumers.sink.gorse_sink"),
        pytest.raises(asyncio.CancelledError),
    ):
        await sink.run_retells(interval_s=1.0, max_interval_s=10.0, sleep=sleep)
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 1.0, 1.0]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "backoff" in messages[0] and "after 6 failed tries" in messages[1]
