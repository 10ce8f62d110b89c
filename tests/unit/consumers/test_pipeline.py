"""BatchApplier with in-memory fakes (pure logic only: the real stores are integration-tested)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from consumers.coalesce import WritePlan
from consumers.deadletter import DeadLetter
from consumers.metrics import Metrics
from consumers.pipeline import BatchApplier, Stopped
from consumers.records import ShardRecord
from gorse_cdc.dms.record import DmsRecord, encode_record
from gorse_cdc.errors import GorsePermanentError, GorseRetriableError
from gorse_cdc.mapping import Mapper
from gorse_cdc.retry import RetryPolicy


class FakeSink:
    def __init__(self, poison_item: str | None = None, fail_times: int = 0) -> None:
        self.poison_item = poison_item
        self.fail_times = fail_times
        self.plans: list[WritePlan] = []

    async def write(self, plan: WritePlan) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise GorseRetriableError("POST", "/api/items", 503, "down")
        if self.poison_item and any(k[1] == self.poison_item for k in plan.put_feedback):
            raise GorsePermanentError("PUT", "/api/feedback", 400, "refused")
        self.plans.append(plan)


class FakeLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def rating(seq: int, user: int, movie: int, value: int) -> ShardRecord:
    rec = DmsRecord(
        "data",
        "insert",
        "public",
        "ratings",
        {"user_id": user, "movie_id": movie, "rating": value, "rated_at": "2024-01-01T00:00:00"},
    )
    return ShardRecord("shardId-0", str(seq), encode_record(rec))


async def test_bisect_isolates_the_poison_record_and_applies_the_rest() -> None:
    records = [rating(i, 1, i, 5) for i in range(1, 9)]
    sink, letters = FakeSink(poison_item="5"), FakeLetters()
    outcome = await BatchApplier(Mapper(), sink, letters).apply(records, lambda: False)
    assert [d.sequence_number for d in letters.letters] == ["5"]
    assert outcome.applied == 7
    applied = {k[1] for p in sink.plans for k in p.put_feedback}
    assert applied == {str(i) for i in range(1, 9)} - {"5"}


async def test_undecodable_and_unknown_tables_are_dead_lettered_with_reasons() -> None:
    bad = [
        ShardRecord("s", "1", b"\xff\xfe"),
        ShardRecord("s", "2", b'{"metadata": {"record-type": "data", "operation": "insert"}}'),
        ShardRecord(
            "s",
            "3",
            encode_record(DmsRecord("data", "insert", "public", "nope", {"id": 1})),
        ),
        ShardRecord(
            "s", "4", encode_record(DmsRecord("data", "insert", "public", "ratings", {"user_id": 1}))
        ),
    ]
    letters = FakeLetters()
    outcome = await BatchApplier(Mapper(), FakeSink(), letters).apply(bad, lambda: False)
    assert outcome.applied == 0
    assert [d.sequence_number for d in letters.letters] == ["1", "2", "3", "4"]
    assert letters.letters[2].table == "nope" and "mapping" in letters.letters[2].reason


async def test_retriable_failures_hold_progress_then_recover() -> None:
    sink = FakeSink(fail_times=2)
    applier = BatchApplier(Mapper(), sink, FakeLetters())
    applier.retry = RetryPolicy(base_s=0.001, cap_s=0.002)
    outcome = await applier.apply([rating(1, 1, 1, 4)], lambda: False)
    assert outcome.applied == 1 and len(sink.plans) == 1


async def test_stop_during_retries_raises_stopped() -> None:
    applier = BatchApplier(Mapper(), FakeSink(fail_times=100), FakeLetters())
    with pytest.raises(Stopped):
        await applier.apply([rating(1, 1, 1, 4)], lambda: True)


async def test_applied_records_are_counted_per_table_and_operation() -> None:
    """Counted per (table, operation) of a batch (the bisected halves each count theirs); one
    freshness sample per applied record (its arrival time: these have no commit timestamp)."""
    metrics = Metrics()
    arrived = datetime.now(UTC) - timedelta(seconds=1)
    records = [replace(rating(i, 1, i, 5), arrived_at=arrived) for i in range(1, 9)]
    await BatchApplier(Mapper(), FakeSink(poison_item="5"), FakeLetters(), metrics).apply(
        records, lambda: False
    )
    assert metrics.records_applied.labels("ratings", "insert")._value.get() == 7
    assert sum(b.get() for b in metrics.freshness._buckets) == 7 and metrics.freshness._sum.get() >= 7
