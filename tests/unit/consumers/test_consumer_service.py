"""The Consumer service with in-memory parts (no AWS, no Gorse): two workers share a stream
through one lease table, across a reshard, and stop gracefully with their leases released."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from consumers.metrics import Metrics
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
