"""The erasure guard (consumers.sink.erasures): a user delete is logged before Gorse deletes the
user; events of logged users are never written; a user logged while their events were being
written is deleted again. Logic only, on the recording fake Gorse of the phase tests."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from consumers.coalesce import WritePlan
from consumers.sink.erasures import MemoryErasureLog, item_hash, user_hash
from consumers.sink.gorse_sink import GorseSink
from consumers.wiring import build_mapper
from gorse_cdc.errors import GorseRetriableError
from gorse_cdc.gorse.models import Feedback, Item
from gorse_cdc.settings import Settings
from tests.unit.consumers.test_gorse_sink_phases import RecordingGorse


def events_plan(*users: str) -> WritePlan:
    return WritePlan(
        put_events={("play", u, "m1"): Feedback("play", u, "m1", 1.0) for u in users},
    )


def sink(gorse: RecordingGorse, log: MemoryErasureLog, refused: list[int] | None = None) -> GorseSink:
    return GorseSink(
        gorse,  # type: ignore[arg-type]
        build_mapper(Settings()),
        concurrency=4,
        erasures=log,
        on_refused_events=refused.append if refused is not None else None,
    )


class OrderedLog(MemoryErasureLog):
    """Records when it logged, into the fake Gorse's call list."""

    def __init__(self, gorse: RecordingGorse) -> None:
        super().__init__()
        self.gorse = gorse

    async def record(self, users: Iterable[str]) -> None:
        users = list(users)
        self.gorse.calls.extend(("erasure_logged", u) for u in users)
        await super().record(users)


async def test_a_user_delete_is_logged_before_gorse_deletes_the_user() -> None:
    gorse = RecordingGorse()
    log = OrderedLog(gorse)
    await sink(gorse, log).write(WritePlan(delete_users=["u-gone"]))
    assert gorse.calls == [("erasure_logged", "u-gone"), ("delete_user", "u-gone")]
    assert user_hash("u-gone") in log.hashes and "u-gone" not in log.hashes  # hashed, not the id


async def test_events_of_an_erased_user_are_refused_and_counted_the_others_written() -> None:
    gorse, log, refused = RecordingGorse(), MemoryErasureLog(), []
    await log.record(["u-erased"])
    s = sink(gorse, log, refused)
    await s.write(events_plan("u-erased", "u-alive"))
    assert ("put_feedback", "play/u-alive/m1") in gorse.calls
    # never written; deleted again (an earlier attempt of the plan may have written it)
    assert [c for c in gorse.calls if "u-erased" in c[1]] == [("delete_user", "u-erased")]
    assert refused == [1] and s.refused_events == 1


class EraseDuringWrite(RecordingGorse):
    """The DMS consumer erases the user while this plan's events are being PUT."""

    def __init__(self, log: MemoryErasureLog, user: str) -> None:
        super().__init__()
        self.log, self.user = log, user

    async def put_feedback(self, rows: object) -> None:
        await super().put_feedback(rows)
        await self.log.record([self.user])


async def test_a_user_erased_while_their_events_were_written_is_deleted_again() -> None:
    log = MemoryErasureLog()
    gorse = EraseDuringWrite(log, "u1")
    await sink(gorse, log).write(events_plan("u1", "u2"))
    assert gorse.calls[-1] == ("delete_user", "u1")
    assert ("delete_user", "u2") not in gorse.calls


async def test_without_a_guard_events_are_written_as_before() -> None:
    gorse = RecordingGorse()
    s = GorseSink(gorse, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    await s.write(events_plan("u1"))
    assert gorse.calls == [("put_feedback", "play/u1/m1")]


class EraseDuringWriteThenFailDelete(EraseDuringWrite):
    """Attempt 1 writes the user's play, the user is erased meanwhile, and the delete that
    follows fails once (Gorse answers 503): the plan is retried."""

    def __init__(self, log: MemoryErasureLog, user: str) -> None:
        super().__init__(log, user)
        self.delete_failures = 1

    async def delete_user(self, user_id: str) -> None:
        if self.delete_failures:
            self.delete_failures -= 1
            raise GorseRetriableError("DELETE", f"/api/user/{user_id}", 503, "injected")
        await super().delete_user(user_id)


async def test_a_retried_plan_deletes_again_a_user_erased_during_its_first_attempt() -> None:
    log = MemoryErasureLog()
    gorse = EraseDuringWriteThenFailDelete(log, "u1")
    s = sink(gorse, log)
    plan = events_plan("u1", "u2")
    with pytest.raises(GorseRetriableError):
        await s.write(plan)  # the play is in Gorse, the user's second delete failed
    assert ("put_feedback", "play/u1/m1") in gorse.calls
    await s.write(plan)  # the retry: u1's events are refused now, and u1 is deleted again
    assert gorse.calls[-1] == ("delete_user", "u1")
    assert gorse.calls.count(("put_feedback", "play/u1/m1")) == 1


class BlankItems(RecordingGorse):
    """Gorse holding blank items (auto-inserted for feedback) with no feedback left."""

    def __init__(self, blanks: list[str]) -> None:
        super().__init__()
        self.items.update({i: Item(i) for i in blanks})
        self.reads: list[str] = []

    async def get_item(self, item_id: str) -> Item | None:
        self.reads.append(item_id)
        return await super().get_item(item_id)


async def test_deleted_items_are_logged_and_only_their_blanks_are_read_and_removed() -> None:
    log = OrderedLog(RecordingGorse())
    gorse = BlankItems(["m1", "m2"])
    log.gorse = gorse
    s = sink(gorse, log)
    await s.write(WritePlan(delete_items=["m1"]))
    assert gorse.calls == [("delete_item", "m1")] and item_hash("m1") in log.hashes
    gorse.items["m1"] = Item("m1")  # a late rating of m1 made Gorse insert it blank again
    gorse.calls.clear()
    # the user's delete took the ratings of m1 (deleted movie) and m2 (never deleted) with it
    await s.write(WritePlan(delete_users=["u1"], orphan_checks={"m1", "m2"}))
    assert ("delete_item", "m1") in gorse.calls and ("delete_item", "m2") not in gorse.calls
    assert gorse.reads == ["m1"]  # m2 is not in the log: no blank can exist, never read
