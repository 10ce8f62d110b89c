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


class SlowApplier(RecordingApplier):
    """Notes how many reads the stream had seen when each apply finished."""

    def __init__(self, stream: InMemoryStream) -> None:
        super().__init__()
        self.stream = stream
        self.reads_at_end: list[int] = []

    async def apply(self, records, should_stop):  # type: ignore[no-untyped-def]
        for _ in range(5):
            await asyncio.sleep(0)  # the read ahead runs meanwhile
        out = await super().apply(records, should_stop)
        self.reads_at_end.append(self.stream.reads)
        return out


async def test_a_shard_behind_reads_its_next_batch_during_the_apply_in_order() -> None:
    stream = InMemoryStream()
    seqs = stream.put("shard-0000", *(str(i).encode() for i in range(7)))
    stream.split("shard-0000")
    applier, cps = SlowApplier(stream), RecordingCheckpoints()
    w = worker(stream, applier, cps)
    assert await w.run() is ShardState.SHARD_ENDED
    assert applier.sequences("shard-0000") == seqs  # every record once, in order
    assert [c[2] for c in cps.calls if c[0] == "checkpoint"] == [seqs[1], seqs[3], seqs[5], seqs[6]]
    # while batch k applied, batch k+1 had been read already (reads = k + 2)
    assert applier.reads_at_end[:3] == [2, 3, 4]
    assert w.read_ahead_batches == 3


async def test_without_read_ahead_one_read_per_apply() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", *(str(i).encode() for i in range(6)))
    stream.split("shard-0000")
    applier = SlowApplier(stream)
    w = ShardWorker(
        stream.source("shard-0000"),
        applier,
        RecordingCheckpoints(),
        pacer=PollPacer(0.0, min_interval_s=0.0),
        batch_limit=lambda: 2,
        metrics=METRICS,
        read_ahead=False,
    )
    await w.run()
    assert applier.reads_at_end == [1, 2, 3]


async def test_a_stop_during_the_apply_drops_the_batch_read_ahead() -> None:
    stream = InMemoryStream()
    seqs = stream.put("shard-0000", *(str(i).encode() for i in range(6)))
    applier, cps = RecordingApplier(), RecordingCheckpoints()
    applier.gate = asyncio.Event()
    w = worker(stream, applier, cps)
    task = asyncio.create_task(w.run())
    while stream.reads < 2:  # noqa: ASYNC110 (the fake counts reads)
        await asyncio.sleep(0)
    w.request_shutdown()  # graceful: the batch applying is finished and checkpointed
    applier.gate.set()
    assert await task is ShardState.SHUT_DOWN
    assert applier.sequences("shard-0000") == seqs[:2]  # the batch read ahead was not applied
    assert cps.calls == [("checkpoint", "shard-0000", seqs[1])]
