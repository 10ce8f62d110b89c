"""Renewals run concurrently with short timeouts, and the write deadline is enforced by a timer
of its own: a hung DynamoDB neither stalls the renewal of the other leases nor keeps a write in
flight past the deadline (issue 20, item 6). The real-stack version, with DynamoDB hung behind
a proxy: tests/integration/consumers/test_dynamodb_hang.py."""

from __future__ import annotations

import asyncio
import time

from consumers.leases.coordinator import RENEW_TIMEOUT, WRITE_DEADLINE, LeaseCoordinator
from consumers.leases.lease import Lease
from consumers.metrics import Metrics
from consumers.service import Consumer, ConsumerParts
from consumers.shard_worker import ShardState
from tests.unit.consumers.fakes import InMemoryLeaseTable, InMemoryStream, RecordingApplier
from tests.unit.consumers.test_consumer_service import settings, until


class SlowLeaseTable(InMemoryLeaseTable):
    """Each renewal takes ``delay_s``; the renewals of ``hung`` leases (or all, with ``hang_all``)
    and, with ``hang_all``, every Scan, never return (a DynamoDB that stopped answering)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.hung: set[str] = set()
        self.hang_all = False
        self.in_flight = 0
        self.peak = 0
        self.answer = asyncio.Event()  # DynamoDB answers again

    async def _hang(self) -> None:
        await self.answer.wait()

    async def renew(self, lease: Lease) -> Lease:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.hang_all or lease.lease_key in self.hung:
                await self._hang()
            await asyncio.sleep(self.delay_s)
            return await super().renew(lease)
        finally:
            self.in_flight -= 1

    async def list_leases(self) -> list[Lease]:
        if self.hang_all:
            await self._hang()
        return await super().list_leases()


async def held(table: SlowLeaseTable, shards: int, failover_ms: int) -> LeaseCoordinator:
    c = LeaseCoordinator(table, "w", failover_ms=failover_ms, max_steal=0)  # type: ignore[arg-type]
    stream = InMemoryStream(shards)
    await c.sync_shards(await stream.list_shards())
    for le in await table.list_leases():
        taken = await table.take(le, "w")
        assert taken is not None
        c.held[le.lease_key] = taken
        c.renewed_at[le.lease_key] = c.clock()
    return c


async def test_renewals_run_at_once() -> None:
    table = SlowLeaseTable(delay_s=0.2)
    c = await held(table, 40, failover_ms=10_000)
    started = time.monotonic()
    assert await c.renew() == []
    took = time.monotonic() - started
    # one by one: 40 x 0.2 s = 8 s, past the write deadline (6 s) of the first lease renewed
    assert took < 1.0, took
    assert table.peak == 40
    assert all(le.lease_counter == 2 for le in table.rows.values())


async def test_a_hung_renewal_times_out_and_the_others_are_renewed() -> None:
    table = SlowLeaseTable()
    c = await held(table, 4, failover_ms=1000)
    table.hung.add("shard-0002")
    before = dict(c.renewed_at)
    started = time.monotonic()
    assert await c.renew() == []  # not lost: its deadline runs on
    assert time.monotonic() - started < 1.0 * RENEW_TIMEOUT + 0.2
    assert "shard-0002" in c.held
    assert c.renewed_at["shard-0002"] == before["shard-0002"]
    assert all(c.renewed_at[k] > before[k] for k in c.held if k != "shard-0002")


async def test_the_write_in_flight_is_cancelled_at_the_deadline_while_dynamodb_hangs() -> None:
    stream, table = InMemoryStream(1), SlowLeaseTable()
    stream.put("shard-0000", b"1")
    applier = RecordingApplier()
    applier.gate = asyncio.Event()  # the write in flight never returns by itself
    stop = asyncio.Event()
    consumer = Consumer(
        settings("a"),
        ConsumerParts(
            leases=table,  # type: ignore[arg-type]
            list_shards=stream.list_shards,
            source_for=stream.source_for,
            applier=applier,
        ),
        metrics=Metrics(),
    )
    run = asyncio.create_task(consumer.run(stop))
    workers = consumer.workers
    await until(lambda: "shard-0000" in workers and workers["shard-0000"][0].applying_since is not None)
    _, task = consumer.workers["shard-0000"]
    table.hang_all = True  # every DynamoDB call from now on: renewals, the loop's Scan
    renewed_at = consumer.coordinator.renewed_at["shard-0000"]
    await asyncio.wait({task}, timeout=3.0)
    assert task.done(), "the write in flight was not cancelled while DynamoDB hangs"
    cancelled_at = time.monotonic()
    assert task.result() is ShardState.LEASE_LOST
    # within the deadline (0.6 s here) + the timer's tick, well before others may take it (1 s)
    assert cancelled_at - renewed_at < 1.0 * WRITE_DEADLINE + 0.2, cancelled_at - renewed_at
    assert applier.applied == []  # nothing written, nothing checkpointed
    assert table.checkpoints == []
    stop.set()
    table.hang_all = False
    table.answer.set()
    assert await asyncio.wait_for(run, 10) == 0


class FailingScans(InMemoryLeaseTable):
    """Scans (ListShards' sync and the balance read the lease table) fail while ``failing``: a
    DynamoDB that times out on them, as a busy moto did in the freshness bench; renewals work."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def list_leases(self) -> list[Lease]:
        if self.failing:
            raise OSError("injected: Scan timed out")
        return await super().list_leases()


async def test_failing_scans_never_skip_a_renewal_so_the_shard_keeps_its_lease() -> None:
    """Before, a round renewed after syncing shards (a Scan): each failed Scan skipped that
    round's renewal, and with renewals every failover/3 against a 0.6 deadline the shard
    stopped after one or two such rounds (the bench's 'lease not renewed before its write
    deadline'). Renewals now come first, every failover/6."""
    stream, table = InMemoryStream(1), FailingScans()
    stream.put("shard-0000", b"1")
    applier = RecordingApplier()
    stop = asyncio.Event()
    s = settings("a")
    s = s.model_copy(update={"leases": s.leases.model_copy(update={"failover_ms": 3000})})
    consumer = Consumer(
        s,
        ConsumerParts(
            leases=table,  # type: ignore[arg-type]
            list_shards=stream.list_shards,
            source_for=stream.source_for,
            applier=applier,
        ),
        metrics=Metrics(),
    )
    run = asyncio.create_task(consumer.run(stop))
    await until(lambda: len(applier.applied) == 1)
    table.failing = True
    await asyncio.sleep(3.0)  # five deadlines' worth of failing Scans (deadline 1.8 s)
    assert "shard-0000" in consumer.coordinator.held, "the lease was dropped while renewals worked"
    assert "shard-0000" in consumer.workers, "the shard was stopped while its lease could be renewed"
    table.failing = False
    stream.put("shard-0000", b"2")
    await until(lambda: len(applier.applied) == 2)
    stop.set()
    assert await asyncio.wait_for(run, 10) == 0
