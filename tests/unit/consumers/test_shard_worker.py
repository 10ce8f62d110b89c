"""ShardWorker's state machine on in-memory seams: checkpoint only after apply, shard end,
lease loss, graceful shutdown, failure, and illegal transitions as a typed error."""

from __future__ import annotations

import asyncio

import pytest

from consumers.kinesis.pacing import PollPacer
from consumers.metrics import Metrics
from consumers.shard_worker import IllegalTransitionError, ShardState, ShardWorker
from gorse_cdc.errors import FatalError
from tests.unit.consumers.fakes import InMemoryStream, RecordingApplier, RecordingCheckpoints

METRICS = Metrics()


def worker(
    stream: InMemoryStream,
    applier: RecordingApplier,
    cps: RecordingCheckpoints,
    shard: str = "shard-0000",
    limit: int = 2,
) -> ShardWorker:
    return ShardWorker(
        stream.source(shard),
        applier,
        cps,
        pacer=PollPacer(0.0, min_interval_s=0.0),
        batch_limit=lambda: limit,
        metrics=METRICS,
    )


async def test_a_closed_shard_is_applied_checkpointed_per_batch_then_ended() -> None:
    stream = InMemoryStream()
    seqs = stream.put("shard-0000", b"1", b"2", b"3")
    a, b = stream.split("shard-0000")
    applier, cps = RecordingApplier(), RecordingCheckpoints()
    w = worker(stream, applier, cps)
    assert await w.run() is ShardState.SHARD_ENDED
    assert applier.sequences("shard-0000") == seqs
    assert cps.calls == [
        ("checkpoint", "shard-0000", seqs[1]),
        ("checkpoint", "shard-0000", seqs[2]),
        ("ended", "shard-0000", "closed", a, b),
    ]
    assert w.source.closed  # type: ignore[attr-defined]


async def test_a_worker_runs_once_a_second_run_is_an_illegal_transition() -> None:
    stream = InMemoryStream()
    stream.split("shard-0000")
    w = worker(stream, RecordingApplier(), RecordingCheckpoints())
    await w.run()
    with pytest.raises(IllegalTransitionError, match="shard_ended -> processing"):
        await w.run()
    assert issubclass(IllegalTransitionError, FatalError)


async def test_lease_lost_at_checkpoint_stops_without_another_checkpoint() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", *[str(i).encode() for i in range(6)])
    applier, cps = RecordingApplier(), RecordingCheckpoints(lose_after=1)
    w = worker(stream, applier, cps)
    assert await w.run() is ShardState.LEASE_LOST
    assert len(cps.calls) == 1  # the first checkpoint only
    assert len(applier.applied) == 4  # the batch whose checkpoint failed was applied, no more


async def test_an_aborted_batch_is_never_checkpointed() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", b"1", b"2")
    applier, cps = RecordingApplier(), RecordingCheckpoints()
    applier.gate = asyncio.Event()
    w = worker(stream, applier, cps)
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.01)
    w.lease_lost()  # while the batch is being applied
    applier.gate.set()
    assert await task is ShardState.LEASE_LOST
    assert cps.calls == []


async def test_shutdown_finishes_the_current_batch_and_checkpoints_it() -> None:
    stream = InMemoryStream()
    seqs = stream.put("shard-0000", b"1", b"2")
    applier, cps = RecordingApplier(), RecordingCheckpoints()
    applier.gate = asyncio.Event()
    w = worker(stream, applier, cps)
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.01)
    w.request_shutdown()
    applier.gate.set()
    assert await task is ShardState.SHUT_DOWN
    assert cps.calls == [("checkpoint", "shard-0000", seqs[1])]


async def test_an_unexpected_error_fails_the_worker_and_keeps_the_error() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", b"1")
    applier, cps = RecordingApplier(), RecordingCheckpoints()
    applier.fail_with = RuntimeError("boom")
    w = worker(stream, applier, cps)
    assert await w.run() is ShardState.FAILED
    assert isinstance(w.error, RuntimeError)
    assert cps.calls == []


async def test_past_the_write_deadline_the_write_in_flight_is_cancelled_and_nothing_checkpointed() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", b"1", b"2")
    applier, cps = RecordingApplier(), RecordingCheckpoints()
    applier.gate = asyncio.Event()  # the write hangs (Gorse slow, the lease no longer renewed)
    renewed = [True]
    w = ShardWorker(
        stream.source("shard-0000"),
        applier,
        cps,
        pacer=PollPacer(0.0, min_interval_s=0.0),
        batch_limit=lambda: 2,
        metrics=METRICS,
        may_write=lambda: renewed[0],
    )
    run = asyncio.create_task(w.run())
    await asyncio.sleep(0.05)
    renewed[0] = False
    w.abort()  # what the service does once the deadline passed
    assert await asyncio.wait_for(run, 1) is ShardState.SHUT_DOWN
    applier.gate.set()
    await asyncio.sleep(0.01)
    assert applier.applied == [] and cps.calls == []  # the cancelled write never completed


async def test_a_worker_checks_its_write_deadline_before_each_attempt() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", b"1", b"2", b"3")
    applier, cps = RecordingApplier(), RecordingCheckpoints()
    calls = iter([True, True, False])  # the deadline passes after the first batch
    w = ShardWorker(
        stream.source("shard-0000"),
        applier,
        cps,
        pacer=PollPacer(0.0, min_interval_s=0.0),
        batch_limit=lambda: 2,
        metrics=METRICS,
        may_write=lambda: next(calls, False),
    )
    assert await w.run() is ShardState.LEASE_LOST
    assert [r.data for r in applier.applied] == [b"1", b"2"]
    assert len(cps.calls) == 1
