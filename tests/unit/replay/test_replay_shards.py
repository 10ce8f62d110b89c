"""A Kinesis replay runs through the live consumer's ShardWorker; only its seams differ: the
bounded source (stop point, caught up), the filtered rate-limited applier that counts, and the
dry run's checkpoint store that remembers nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.kinesis.pacing import PollPacer
from consumers.metrics import Metrics
from consumers.replay.plan import RecordFilter, ReplaySummary, StopPoint
from consumers.replay.shards import BoundedSource, FilteredApplier, NoCheckpoints
from consumers.shard_worker import ShardState, ShardWorker
from gorse_cdc.retry import RateLimiter
from tests.unit.consumers.fakes import InMemoryStream, RecordingApplier, RecordingCheckpoints

METRICS = Metrics()


def run_worker(source: BoundedSource, applier: FilteredApplier, cps: object) -> ShardWorker:
    return ShardWorker(
        source,
        applier,
        cps,  # type: ignore[arg-type]
        pacer=PollPacer(0.0, min_interval_s=0.0),
        batch_limit=lambda: 3,
        metrics=METRICS,
    )


def counting(summary: ReplaySummary) -> tuple[RecordingApplier, FilteredApplier]:
    inner = RecordingApplier()
    return inner, FilteredApplier(inner, RecordFilter(), RateLimiter(0), summary)


async def test_a_replay_stops_at_its_sequence_number_and_records_the_stop_point() -> None:
    stream = InMemoryStream()
    seqs = stream.put("shard-0000", *[str(i).encode() for i in range(10)])
    summary = ReplaySummary()
    inner, applier = counting(summary)
    cps = RecordingCheckpoints()
    stop = StopPoint(sequence_number=seqs[4], at_tip=False)
    source = BoundedSource(stream.source("shard-0000"), stop, datetime.now(UTC))
    assert await run_worker(source, applier, cps).run() is ShardState.SHARD_ENDED
    assert inner.sequences("shard-0000") == seqs[:5]  # nothing past the stop point
    assert cps.calls[-1] == ("ended", "shard-0000", "stop_point")
    assert ("checkpoint", "shard-0000", seqs[4]) in cps.calls
    assert summary.read == 5 and summary.applied == 5 and summary.shards == {"shard-0000": 5}


async def test_a_replay_of_an_open_shard_ends_when_caught_up() -> None:
    stream = InMemoryStream()
    seqs = stream.put("shard-0000", b"a", b"b")
    inner, applier = counting(ReplaySummary())
    cps = RecordingCheckpoints()
    later = datetime.now(UTC) + timedelta(days=1)
    source = BoundedSource(stream.source("shard-0000"), StopPoint(timestamp=later), datetime.now(UTC))
    assert await run_worker(source, applier, cps).run() is ShardState.SHARD_ENDED
    assert inner.sequences("shard-0000") == seqs
    assert cps.calls[-1] == ("ended", "shard-0000", "stop_point")


async def test_a_replay_of_a_closed_shard_ends_it_as_closed() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", b"a")
    stream.split("shard-0000")
    _, applier = counting(ReplaySummary())
    cps = RecordingCheckpoints()
    source = BoundedSource(stream.source("shard-0000"), StopPoint(at_tip=False), datetime.now(UTC))
    await run_worker(source, applier, cps).run()
    assert cps.calls[-1][:3] == ("ended", "shard-0000", "closed")


async def test_a_dry_run_applies_through_the_same_path_and_saves_nothing() -> None:
    stream = InMemoryStream()
    stream.put("shard-0000", b"a", b"b", b"c", b"d")
    summary = ReplaySummary()
    inner, applier = counting(summary)
    source = BoundedSource(stream.source("shard-0000"), StopPoint(), datetime.now(UTC))
    assert await run_worker(source, applier, NoCheckpoints()).run() is ShardState.SHARD_ENDED
    assert len(inner.applied) == 4 and summary.applied == 4
