"""The write lock discipline (gorse_cdc.gorse.write_locks): concurrent writes of one client share
no user and no item; store deadlock answers are retried and counted. The real-store proof is
tests/integration/core/test_gorse_concurrent_writes.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import pytest

from gorse_cdc.errors import GorsePermanentError, GorseRetriableError
from gorse_cdc.gorse import Feedback, GorseClient, Item, User
from gorse_cdc.gorse.write_locks import KeySetLock, WriteLocks, is_deadlock, partition_of, user_batches

pytestmark = pytest.mark.unit

PG = "pq: deadlock detected (40P01)"
MY = "Error 1213 (40001): Deadlock found when trying to get lock; try restarting transaction"


def test_deadlock_answers_of_both_drivers_are_recognised() -> None:
    assert is_deadlock(GorseRetriableError("PUT", "/api/feedback", 500, PG))
    assert is_deadlock(GorseRetriableError("PUT", "/api/feedback", 500, MY))
    assert not is_deadlock(GorseRetriableError("PUT", "/api/feedback", 500, "database is locked"))
    assert not is_deadlock(GorseRetriableError("PUT", "/api/feedback", 503, PG))


def test_partitions_are_stable_and_in_range() -> None:
    assert partition_of("m1", 8) == partition_of("m1", 8)  # crc32: the same in every process
    assert {partition_of(f"m{i}", 8) for i in range(200)} == set(range(8))


async def test_overlapping_key_sets_never_overlap_in_time() -> None:
    lock = KeySetLock()
    inside: list[set[str]] = []
    seen_together: list[tuple[set[str], set[str]]] = []

    async def holder(keys: set[str]) -> None:
        async with lock.hold(keys):
            seen_together.extend((keys, other) for other in inside)
            inside.append(keys)
            await asyncio.sleep(random.random() / 1000)
            inside.remove(keys)

    rng = random.Random(1)
    sets = [{f"u{rng.randrange(12)}" for _ in range(3)} for _ in range(60)]
    await asyncio.gather(*(holder(s) for s in sets))
    assert seen_together, "disjoint sets should have run side by side"
    assert all(a.isdisjoint(b) for a, b in seen_together)


class Fake(GorseClient):
    """A client whose transport records what is in flight (users and items of each call)."""

    def __init__(self, partitions: int | None, fail: list[str] | None = None) -> None:
        super().__init__("http://gorse.invalid", None, batch_size=50, write_partitions=partitions)
        self.in_flight: list[tuple[set[str], set[str]]] = []
        self.overlaps = 0
        self.calls = 0
        self.rows: list[dict[str, Any]] = []
        self.fail = fail or []

    async def _chunked(self, method: str, path: str, rows: Sequence[dict[str, Any]]) -> int:
        users = {r["UserId"] for r in rows if "UserId" in r}
        items = {r["ItemId"] for r in rows if "ItemId" in r}
        for u, i in self.in_flight:
            if not (u.isdisjoint(users) and i.isdisjoint(items)):
                self.overlaps += 1
        me = (users, items)
        self.in_flight.append(me)
        try:
            await asyncio.sleep(0.001)
            self.calls += 1
            if self.fail:
                raise GorseRetriableError(method, path, 500, self.fail.pop())
            self.rows.extend(rows)
            return len(rows)
        finally:
            self.in_flight.remove(me)


def batches(writers: int, per: int) -> list[list[Feedback]]:
    rng = random.Random(2)
    return [
        [Feedback("like", f"w{w}-u{rng.randrange(20)}", f"m{rng.randrange(30)}", 1.0) for _ in range(per)]
        for w in range(writers)
    ]


async def test_concurrent_feedback_writes_share_no_user_and_no_item() -> None:
    fake = Fake(partitions=4)
    work = batches(16, 60) + batches(4, 60)  # the second set shares users with the first
    items = [Item(f"m{i}", {}) for i in range(30)]
    users = [User(f"w{w}-u{i}", {}) for w in range(3) for i in range(20)]
    await asyncio.gather(
        *(fake.put_feedback(b) for b in work), fake.upsert_items(items), fake.upsert_users(users)
    )
    assert fake.overlaps == 0
    written = [(r["UserId"], r["ItemId"]) for r in fake.rows if "FeedbackType" in r]
    assert sorted(written) == sorted((f.user_id, f.item_id) for b in work for f in b)  # each once


async def test_without_the_locks_writes_overlap() -> None:  # the test above can fail
    fake = Fake(partitions=None)
    await asyncio.gather(*(fake.put_feedback(b) for b in batches(16, 60)))
    assert fake.overlaps > 0


async def test_a_deadlock_answer_is_retried_and_counted_other_errors_are_not() -> None:
    fake = Fake(partitions=2, fail=[MY, PG])
    assert await fake.put_feedback([Feedback("like", "u1", "m1", 1.0)]) == 1
    assert fake.write_locks is not None and fake.write_locks.deadlocks == 2
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    locks = WriteLocks(2, deadlock_retries=2, sleep=sleep)

    async def always() -> int:
        raise GorseRetriableError("PUT", "/api/feedback", 500, PG)

    with pytest.raises(GorseRetriableError):
        await locks.retrying(always)
    assert locks.deadlocks == 3 and len(slept) == 2  # jittered, growing pauses
    assert 0.025 <= slept[0] <= 0.075 and 0.05 <= slept[1] <= 0.15

    async def refused() -> int:
        raise GorsePermanentError("PUT", "/api/feedback", 400, "bad")

    with pytest.raises(GorsePermanentError):
        await locks.retrying(refused)
    assert locks.deadlocks == 3


def test_user_batches_keep_a_users_rows_together() -> None:
    rng = random.Random(4)
    rows = [Feedback("like", f"u{rng.randrange(40)}", f"m{i}", 1.0) for i in range(300)]
    rows += [Feedback("like", "heavy", f"m{i}", 1.0) for i in range(120)]  # more than one batch
    out = user_batches(rows, 50, lambda f: f.user_id)
    assert sorted(map(id, rows)) == sorted(id(f) for b in out for f in b)  # each row once
    assert all(len(b) <= 50 for b in out)
    owners: dict[str, set[int]] = {}
    for n, b in enumerate(out):
        for f in b:
            owners.setdefault(f.user_id, set()).add(n)
    assert all(len(ns) == 1 for u, ns in owners.items() if u != "heavy")


async def test_writes_waiting_for_a_partition_go_out_together() -> None:
    fake = Fake(partitions=4)
    fake.batch_size = 10_000
    work = batches(16, 60)
    locks = fake.write_locks
    assert locks is not None
    sub_batches = sum(len(locks.split(b, lambda f: f.item_id)) for b in work)
    await asyncio.gather(*(fake.put_feedback(b) for b in work))
    assert fake.overlaps == 0 and fake.calls < sub_batches / 2
    assert len(fake.rows) == sum(map(len, work))


async def test_a_cancelled_write_leaves_nothing_queued() -> None:
    fake = Fake(partitions=1)
    first = asyncio.ensure_future(fake.put_feedback([Feedback("like", "a", "m1", 1.0)]))
    await asyncio.sleep(0)  # in flight
    second = asyncio.ensure_future(fake.put_feedback([Feedback("like", "b", "m1", 2.0)]))
    await asyncio.sleep(0)  # queued behind the first (one partition)
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await asyncio.sleep(0.01)
    assert [r["UserId"] for r in fake.rows] == ["a"]
