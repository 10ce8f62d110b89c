"""LeaseCoordinator on the in-memory lease table: creation from the stream, expiry judged on
this worker's clock, stealing, lost leases, and checkpoints conditional on ownership."""

from __future__ import annotations

import random

import pytest

from consumers.leases.coordinator import LeaseCoordinator
from consumers.leases.lease import SHARD_END, LeaseLostError
from consumers.protocols import EndReason
from gorse_cdc.errors import FatalError
from tests.unit.consumers.fakes import InMemoryLeaseTable, InMemoryStream, ManualClock


def coordinator(table: InMemoryLeaseTable, name: str, clock: ManualClock, steal: int = 1) -> LeaseCoordinator:
    return LeaseCoordinator(
        table, name, failover_ms=10_000, max_steal=steal, clock=clock, rng=random.Random(7)
    )


async def test_leases_follow_the_stream_and_a_lone_worker_takes_them_all() -> None:
    stream, table, clock = InMemoryStream(3), InMemoryLeaseTable(), ManualClock()
    a = coordinator(table, "a", clock)
    assert await a.sync_shards(await stream.list_shards()) == 3
    assert await a.sync_shards(await stream.list_shards()) == 0
    taken = await a.balance()
    assert sorted(le.lease_key for le in taken) == sorted(stream.shards)
    assert all(row.lease_owner == "a" for row in table.rows.values())


async def test_an_owned_lease_is_taken_only_after_the_failover_time() -> None:
    stream, table, clock = InMemoryStream(1), InMemoryLeaseTable(), ManualClock()
    a, b = coordinator(table, "a", clock), coordinator(table, "b", clock)
    await a.sync_shards(await stream.list_shards())
    await a.balance()
    assert await b.balance() == []  # b sees the counter for the first time
    clock.advance(5)
    await a.renew()  # a is alive: its counter moves
    clock.advance(6)
    assert await b.balance() == []  # 6 s since the counter last moved: not expired
    clock.advance(10)  # a stopped renewing
    taken = await b.balance()
    assert [le.lease_key for le in taken] == ["shard-0000"]
    # a finds out at its next renewal; its checkpoint is refused meanwhile too
    assert await a.renew() == ["shard-0000"]
    with pytest.raises(LeaseLostError):
        await a.checkpoint("shard-0000", "1001")


async def test_a_checkpoint_after_another_owner_took_the_lease_is_refused() -> None:
    stream, table, clock = InMemoryStream(1), InMemoryLeaseTable(), ManualClock()
    a = coordinator(table, "a", clock)
    await a.sync_shards(await stream.list_shards())
    await a.balance()
    await a.checkpoint("shard-0000", "1001")
    table.force_owner("shard-0000", "b")  # stolen between two renewals
    with pytest.raises(LeaseLostError):
        await a.checkpoint("shard-0000", "1002")
    assert table.rows["shard-0000"].checkpoint == "1001"  # never moved by the old owner


async def test_a_new_worker_steals_toward_an_even_share() -> None:
    stream, table, clock = InMemoryStream(4), InMemoryLeaseTable(), ManualClock()
    a, b = coordinator(table, "a", clock), coordinator(table, "b", clock, steal=1)
    await a.sync_shards(await stream.list_shards())
    assert len(await a.balance()) == 4
    stolen = await b.balance()
    assert len(stolen) == 1  # at most max_steal per round
    assert await a.renew() == [stolen[0].lease_key]
    await b.balance()
    owners = [row.lease_owner for row in table.rows.values()]
    assert owners.count("b") == 2 and owners.count("a") == 2


async def test_a_closed_shard_ends_and_frees_its_children() -> None:
    stream, table, clock = InMemoryStream(1), InMemoryLeaseTable(), ManualClock()
    left, right = stream.split("shard-0000")
    a = coordinator(table, "a", clock)
    await a.sync_shards(await stream.list_shards())
    assert [le.lease_key for le in await a.balance()] == ["shard-0000"]  # children wait
    await a.shard_ended("shard-0000", (left, right))
    row = table.rows["shard-0000"]
    assert row.checkpoint == SHARD_END and row.lease_owner is None
    assert row.child_shard_ids == {left, right}
    assert sorted(le.lease_key for le in await a.balance()) == [left, right]


async def test_the_live_store_has_no_stop_point() -> None:
    stream, table, clock = InMemoryStream(1), InMemoryLeaseTable(), ManualClock()
    a = coordinator(table, "a", clock)
    await a.sync_shards(await stream.list_shards())
    await a.balance()
    with pytest.raises(FatalError, match="no stop point"):
        await a.shard_ended("shard-0000", (), EndReason.STOP_POINT)


async def test_children_of_a_parent_trimmed_from_the_stream_do_not_wait_forever() -> None:
    stream, table, clock = InMemoryStream(1), InMemoryLeaseTable(), ManualClock()
    left, right = stream.split("shard-0000")
    a = coordinator(table, "a", clock)
    await a.sync_shards(await stream.list_shards())
    assert [le.lease_key for le in await a.balance()] == ["shard-0000"]
    a.drop("shard-0000")  # say the worker died before SHARD_END, then retention passed
    await table.release("shard-0000", "a")
    del stream.shards["shard-0000"]
    await a.sync_shards(await stream.list_shards())
    assert a.gone == {"shard-0000"}
    taken = sorted(le.lease_key for le in await a.balance())
    assert taken == [left, right]  # the children run; the gone parent is never taken
