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


async def test_a_new_worker_asks_for_leases_and_gets_them_only_after_the_owner_hands_off() -> None:
    stream, table, clock = InMemoryStream(4), InMemoryLeaseTable(), ManualClock()
    a, b = coordinator(table, "a", clock), coordinator(table, "b", clock, steal=1)
    await a.sync_shards(await stream.list_shards())
    assert len(await a.balance()) == 4
    assert await b.balance() == []  # a steal is a request, never a take
    asked = [k for k, row in table.rows.items() if row.handoff_to == "b"]
    assert len(asked) == 1  # at most max_steal per round
    assert all(row.lease_owner == "a" for row in table.rows.values())  # a still writes them all
    assert await a.renew() == []  # nothing lost: a keeps the lease until it has flushed
    assert list(a.handoff_requested) == asked
    await a.checkpoint(asked[0], "1001")  # a's worker flushed its batch
    assert await a.hand_off(asked[0])
    assert asked[0] not in a.held and not a.may_write(asked[0])
    taken = await b.balance()
    assert [le.lease_key for le in taken] == asked and taken[0].checkpoint == "1001"
    await b.balance()  # the next request
    second = [k for k, row in table.rows.items() if row.handoff_to == "b"]
    await a.renew()
    assert await a.hand_off(second[0])
    await b.balance()
    owners = [row.lease_owner for row in table.rows.values()]
    assert owners.count("b") == 2 and owners.count("a") == 2
    assert table.handoffs == [(asked[0], "a", "b"), (second[0], "a", "b")]


async def test_an_owner_that_never_hands_off_loses_the_lease_after_the_force_time() -> None:
    stream, table, clock = InMemoryStream(2), InMemoryLeaseTable(), ManualClock()
    a, b = coordinator(table, "a", clock), coordinator(table, "b", clock)
    await a.sync_shards(await stream.list_shards())
    await a.balance()
    await b.balance()
    asked = next(k for k, row in table.rows.items() if row.handoff_to == "b")
    for _ in range(8):  # a renews (alive) but ignores the request, as a KCL worker would
        clock.advance(3.5)
        await a.renew()
        assert await b.balance() == []
    clock.advance(3.5)  # 31.5 s > FORCE_AFTER x failover
    assert [le.lease_key for le in await b.balance()] == [asked]
    assert await a.renew() == [asked]


async def test_a_lease_not_renewed_in_time_may_not_be_written_before_others_may_take_it() -> None:
    stream, table, clock = InMemoryStream(1), InMemoryLeaseTable(), ManualClock()
    a, b = coordinator(table, "a", clock), coordinator(table, "b", clock)
    await a.sync_shards(await stream.list_shards())
    await a.balance()
    await b.balance()
    assert a.may_write("shard-0000")
    clock.advance(5.9)  # renewals failing (DynamoDB unreachable from a)
    assert a.may_write("shard-0000")
    clock.advance(0.2)
    assert not a.may_write("shard-0000")  # 6.1 s: a stops writing ...
    assert await b.balance() == []  # ... while b may not take it yet
    clock.advance(4)
    assert [le.lease_key for le in await b.balance()] == ["shard-0000"]


async def test_a_lease_pinned_by_a_replay_is_not_asked_for_until_it_expires() -> None:
    stream, table, clock = InMemoryStream(2), InMemoryLeaseTable(), ManualClock()
    a = coordinator(table, "a", clock)
    await a.sync_shards(await stream.list_shards())
    await a.balance()
    a.drop("shard-0000")
    await table.release("shard-0000", "a")
    await table.take(table.rows["shard-0000"], "replay", pinned=True)
    b = coordinator(table, "b", clock)
    assert await b.balance() == []
    assert table.rows["shard-0000"].handoff_to is None and table.rows["shard-0001"].handoff_to is None
    clock.advance(11)  # the replay died: its lease expires like any other
    await a.renew()  # a is alive
    assert [le.lease_key for le in await b.balance()] == ["shard-0000"]
    assert not table.rows["shard-0000"].pinned


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
