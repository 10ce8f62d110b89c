"""The Consumer service with in-memory parts (no AWS, no Gorse): two workers share a stream
through one lease table, across a reshard, and stop gracefully with their leases released."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from consumers.metrics import Metrics
from consumers.pipeline import BatchOutcome, Stopped
from consumers.service import Consumer, ConsumerParts
from gorse_cdc.settings import Settings
from tests.unit.consumers.fakes import InMemoryLeaseTable, InMemoryStream, RecordingApplier


def settings(worker: str) -> Settings:
    s = Settings()
    return s.model_copy(
        update={
            "leases": s.leases.model_copy(update={"failover_ms": 1000}),
            "consumer": s.consumer.model_copy(
                update={"worker_id": worker, "metrics_port": 0, "idle_pause_ms": 0, "shutdown_timeout_s": 2}
            ),
        }
    )


def consumer(
    worker: str, stream: InMemoryStream, table: InMemoryLeaseTable, applier: RecordingApplier
) -> Consumer:
    parts = ConsumerParts(
        leases=table,  # type: ignore[arg-type]
        list_shards=stream.list_shards,
        source_for=stream.source_for,
        applier=applier,
    )
    return Consumer(settings(worker), parts, metrics=Metrics())


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_two_workers_share_the_shards_in_order_across_a_reshard() -> None:
    stream, table = InMemoryStream(2), InMemoryLeaseTable()
    first = {s: stream.put(s, *[f"{s}-{i}".encode() for i in range(50)]) for s in list(stream.shards)}
    applier = RecordingApplier()
    stop = asyncio.Event()
    runs = [asyncio.create_task(consumer(w, stream, table, applier).run(stop)) for w in ("a", "b")]
    await until(lambda: len({r.sequence_number for r in applier.applied}) >= 100)
    left, right = stream.split("shard-0000")
    later = {left: stream.put(left, b"l1", b"l2"), right: stream.put(right, b"r1")}
    await until(lambda: {r.sequence_number for r in applier.applied} >= {*later[left], *later[right]})
    stop.set()
    assert await asyncio.gather(*runs) == [0, 0]

    for shard, seqs in {**first, **later}.items():
        # at least once, in order: a lease that moves is read again from its last checkpoint
        applied = applier.sequences(shard)
        assert list(dict.fromkeys(applied)) == seqs
        assert len(applied) <= 2 * len(seqs)
    # the parent's records all came before any child's
    order = [r.shard_id for r in applier.applied]
    assert max(i for i, s in enumerate(order) if s == "shard-0000") < order.index(left)
    assert table.rows["shard-0000"].checkpoint == "SHARD_END"
    assert all(row.lease_owner is None for row in table.rows.values())  # released at stop
    assert {owner for _, owner, _ in table.checkpoints} <= {settings("a").consumer.worker_id, "b"}


async def test_a_worker_whose_lease_was_taken_stops_that_shard_and_never_checkpoints_it() -> None:
    stream, table = InMemoryStream(1), InMemoryLeaseTable()
    stream.put("shard-0000", b"1")
    applier = RecordingApplier()
    stop = asyncio.Event()
    c = consumer("a", stream, table, applier)
    run = asyncio.create_task(c.run(stop))
    await until(
        lambda: (
            table.rows.get("shard-0000") is not None and table.rows["shard-0000"].checkpoint != "TRIM_HORIZON"
        )
    )
    table.force_owner("shard-0000", "thief")
    stream.put("shard-0000", b"2")
    await until(lambda: "shard-0000" not in c.workers)
    checkpoints_by_a = [cp for cp in table.checkpoints if cp[1] == "a"]
    stop.set()
    assert await run == 0
    assert [p for _, _, p in checkpoints_by_a] == [stream.shards["shard-0000"].records[0].sequence_number]
    assert table.rows["shard-0000"].lease_owner == "thief"


class TimedApplier:
    """Records, per batch, which worker wrote which sequence numbers and when (start, end)."""

    def __init__(self, worker: str, log: list[tuple[str, str, list[int], float, float]]) -> None:
        self.worker = worker
        self.log = log

    async def apply(self, records, should_stop):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        await asyncio.sleep(0.03)  # a Gorse write in flight
        if should_stop():
            raise Stopped()
        seqs = [r.sequence for r in records]
        self.log.append((self.worker, records[0].shard_id, seqs, started, time.monotonic()))
        return BatchOutcome(applied=len(records))


async def test_a_lease_moves_only_after_the_old_owner_stopped_writing_it() -> None:
    """A second worker joins while the first writes every shard continuously: each lease that
    moves is handed over after the old owner's last write ended, and no record is written twice
    or out of order (no re-read from an older checkpoint)."""
    stream, table = InMemoryStream(4), InMemoryLeaseTable()
    writes: list[tuple[str, str, list[int], float, float]] = []
    stop, feeding = asyncio.Event(), asyncio.Event()

    async def feed() -> None:
        i = 0
        while not feeding.is_set():
            for s in list(stream.shards):
                stream.put(s, f"{s}-{i}".encode())
            i += 1
            await asyncio.sleep(0.005)

    def worker(name: str) -> Consumer:
        parts = ConsumerParts(
            leases=table,  # type: ignore[arg-type]
            list_shards=stream.list_shards,
            source_for=stream.source_for,
            applier=TimedApplier(name, writes),
        )
        return Consumer(settings(name), parts, metrics=Metrics())

    feeder = asyncio.create_task(feed())
    a = asyncio.create_task(worker("a").run(stop))
    await until(lambda: len({w[1] for w in writes}) == 4)
    b = asyncio.create_task(worker("b").run(stop))
    await until(lambda: sum(1 for row in table.rows.values() if row.lease_owner == "b") == 2, 10)
    await until(lambda: sum(1 for w in writes if w[0] == "b") >= 10)
    feeding.set()
    await feeder
    stop.set()
    assert await asyncio.gather(a, b) == [0, 0]

    assert len(table.handoffs) == 2 and {to for _, _, to in table.handoffs} == {"b"}
    for shard in stream.shards:
        mine = [w for w in writes if w[1] == shard]
        seqs = [s for w in mine for s in w[2]]
        assert seqs == sorted(set(seqs)), f"{shard}: a record written twice or out of order"
        for before, after in itertools.pairwise(mine):
            assert after[3] >= before[4], f"{shard}: {after[0]} wrote while {before[0]} was writing"


async def test_a_shard_whose_batch_does_not_apply_is_reported_stalled_and_then_recovered(
    caplog: object,
) -> None:
    import logging

    stream, table = InMemoryStream(1), InMemoryLeaseTable()
    stream.put("shard-0000", b"1")
    applier = RecordingApplier()
    applier.gate = asyncio.Event()  # Gorse answers nothing (the livelock the speed issue saw)
    s = settings("a")
    s = s.model_copy(update={"consumer": s.consumer.model_copy(update={"stall_after_s": 0.3})})
    parts = ConsumerParts(
        leases=table,  # type: ignore[arg-type]
        list_shards=stream.list_shards,
        source_for=stream.source_for,
        applier=applier,
        last_failure=lambda shard: "GorseRetriableError: DELETE /api/item/506: 500 database is locked",
    )
    metrics = Metrics()
    c = Consumer(s, parts, metrics=metrics)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)  # type: ignore[attr-defined]
    run = asyncio.create_task(c.run(stop))
    await until(lambda: c._stalled == {"shard-0000"}, 5)
    assert metrics.shard_stalled.labels("shard-0000")._value.get() == 1
    assert "DELETE /api/item/506" in caplog.text  # type: ignore[attr-defined]
    applier.gate.set()
    await until(lambda: not c._stalled, 5)
    assert metrics.shard_stalled.labels("shard-0000")._value.get() == 0
    stop.set()
    assert await run == 0
