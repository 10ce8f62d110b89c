"""The replay's parts for the shared ShardWorker: a bounded source (stop point, progress), a
filtering, rate-limited applier that keeps the replay's totals, and the checkpoint store of a
dry run. With them a Kinesis replay runs through the same read -> apply -> checkpoint loop as
the live consumer; only these seams differ."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from consumers.coalesce import PlanBuilder
from consumers.pipeline import BatchApplier, BatchOutcome
from consumers.protocols import Applier, EndReason, RecordSource
from consumers.records import RecordBatch, ShardRecord
from consumers.replay.plan import CatchUpEta, RecordFilter, ReplaySummary, StopPoint
from gorse_cdc.retry import RateLimiter


class NoCheckpoints:
    """The CheckpointStore of a dry run: remembers nothing, so a dry run never moves a job's
    positions. (Ownership cannot be lost: nothing is owned.)"""

    async def checkpoint(self, shard_id: str, sequence_number: str) -> None:
        return None

    async def shard_ended(
        self, shard_id: str, children: tuple[str, ...] = (), reason: EndReason = EndReason.CLOSED
    ) -> None:
        return None


class BoundedSource:
    """A RecordSource that ends at the replay's stop point: the first record past it, or (no
    stop point) when the shard is caught up. Updates a progress bar with the catch-up ETA."""

    def __init__(
        self, source: RecordSource, stop: StopPoint, started_at: datetime, bar: Any | None = None
    ) -> None:
        self.source = source
        self.shard_id = source.shard_id
        self.stop = stop
        self.started_at = started_at
        self.bar = bar
        self.eta = CatchUpEta()

    async def next_batch(self, max_records: int) -> RecordBatch:
        batch = await self.source.next_batch(max_records)
        kept: list[ShardRecord] = []
        passed = False
        for r in batch.records:
            if self.stop.passed(r, self.started_at):
                passed = True
                break
            kept.append(r)
        if self.bar is not None:
            self.bar.update(len(kept))
            self.bar.set_postfix_str(self.eta.update(batch.millis_behind_latest, bool(batch.records)))
        caught_up = not batch.records and not batch.millis_behind_latest
        ended = batch.shard_ended and not passed
        return RecordBatch(
            batch.shard_id,
            kept,
            batch.millis_behind_latest,
            shard_ended=ended,
            child_shard_ids=batch.child_shard_ids if ended else (),
            stop_point=not ended and (passed or caught_up),
        )

    async def close(self) -> None:
        await self.source.close()
        if self.bar is not None:
            self.bar.close()


class FilteredApplier:
    """An Applier that keeps only the records the replay asked for, at most ``limiter``'s
    rate, and adds every outcome to the replay's summary."""

    def __init__(
        self,
        inner: Applier,
        record_filter: RecordFilter,
        limiter: RateLimiter,
        summary: ReplaySummary,
        *,
        label: str | None = None,
    ) -> None:
        self.inner = inner
        self.label = label  # count under this name instead of the records' shard
        self.filter = record_filter
        self.limiter = limiter
        self.summary = summary

    async def apply(self, records: Sequence[ShardRecord], should_stop: Callable[[], bool]) -> BatchOutcome:
        kept = [r for r in records if self.filter.keep(r)]
        s = self.summary
        s.read += len(records)
        s.filtered += len(records) - len(kept)
        if records:
            shard = self.label or records[0].shard_id
            s.shards[shard] = s.shards.get(shard, 0) + len(records)
        await self.limiter.acquire(len(kept))
        outcome = await self.inner.apply(kept, should_stop)
        s.applied += outcome.applied
        s.skipped += outcome.skipped
        s.dead_lettered += len(outcome.dead_letters)
        return outcome


class CoalescingApplier:
    """The Applier of a Kinesis replay: records are decoded and mapped into one PlanBuilder
    for the whole range (bad records dead-lettered at once); the runner writes the plan."""

    def __init__(self, inner: BatchApplier, builder: PlanBuilder) -> None:
        self.inner = inner
        self.builder = builder

    async def apply(self, records: Sequence[ShardRecord], should_stop: Callable[[], bool]) -> BatchOutcome:
        return await self.inner.collect(records, self.builder, should_stop)
