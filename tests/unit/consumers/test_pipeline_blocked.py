"""A failure of the pipeline itself (a wrong key, a wrong URL, a refused connection) holds
progress and alerts; it never dead-letters a record. Only a record's own content does."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from consumers.coalesce import WritePlan
from consumers.deadletter import DeadLetter
from consumers.metrics import Metrics
from consumers.pipeline import BatchApplier, Stopped, blocking_reason
from consumers.records import ShardRecord
from consumers.wiring import build_mapper
from gorse_cdc.errors import GorseFatalError, GorsePermanentError, GorseRetriableError
from gorse_cdc.gorse.client import status_error
from gorse_cdc.retry import RetryPolicy
from gorse_cdc.settings import Settings


def record(seq: int, user: str) -> ShardRecord:
    doc = {
        "data": {"user_id": user, "age": 30, "gender": "M", "occupation": "x", "zip": "12345"},
        "metadata": {
            "timestamp": "2026-11-28T00:00:00.000000Z",
            "record-type": "data",
            "operation": "insert",
            "partition-key-type": "primary-key",
            "schema-name": "public",
            "table-name": "users",
        },
    }
    return ShardRecord("shard-1", str(seq), orjson.dumps(doc))


class ScriptedSink:
    """Fails with the given errors, one per call, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.written: list[WritePlan] = []

    async def write(self, plan: WritePlan) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.written.append(plan)


class Letters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def applier(sink: ScriptedSink, letters: Letters, metrics: Metrics) -> BatchApplier:
    a = BatchApplier(build_mapper(Settings()), sink, letters, metrics)
    a.retry = RetryPolicy(base_s=0.001, cap_s=0.002)
    return a


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (status_error("POST", "/api/users", 401, "unauthorized"), "auth"),
        (status_error("POST", "/api/users", 403, "forbidden"), "auth"),
        (status_error("POST", "/api/users", 404, "404 page not found"), "routing"),
        (status_error("POST", "/api/users", 413, "too large"), "payload_too_large"),
        (GorseRetriableError("POST", "/api/users", None, "connection refused"), "connectivity"),
    ],
)
async def test_pipeline_failures_hold_progress_alert_and_never_dead_letter(
    error: Exception, reason: str
) -> None:
    metrics, letters = Metrics(), Letters()
    sink = ScriptedSink(*([error] * 5))
    a = applier(sink, letters, metrics)
    seen: list[str | None] = []

    async def watch() -> None:
        while not sink.written:
            seen.append(a.blocked)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    outcome = await a.apply([record(1, "1"), record(2, "2")], lambda: False)
    await watcher
    assert outcome.applied == 2 and not outcome.dead_letters and not letters.letters
    assert reason in seen  # /readyz said why while it lasted
    assert a.blocked is None and metrics.pipeline_blocked._value.get() == 0  # type: ignore[attr-defined]
    assert metrics.pipeline_errors.labels(reason)._value.get() == 5  # type: ignore[attr-defined]


async def test_a_blocked_batch_can_be_stopped_and_is_never_checkpointable() -> None:
    metrics, letters = Metrics(), Letters()
    sink = ScriptedSink(*([status_error("POST", "/api/users", 401, "unauthorized")] * 10_000))
    a = applier(sink, letters, metrics)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(Stopped):
        await a.apply([record(1, "1")], stop.is_set)
    assert not letters.letters


async def test_only_a_records_own_content_dead_letters_it() -> None:
    metrics, letters = Metrics(), Letters()
    sink = ScriptedSink(GorsePermanentError("POST", "/api/users", 400, "bad label"))
    outcome = await applier(sink, letters, metrics).apply([record(1, "1")], lambda: False)
    assert len(outcome.dead_letters) == 1 and len(letters.letters) == 1


def test_busy_gorse_is_not_a_pipeline_failure() -> None:
    assert blocking_reason(GorseRetriableError("PUT", "/api/feedback", 503, "busy")) is None
    assert blocking_reason(GorseRetriableError("PUT", "/api/feedback", 429, "slow")) is None
    assert blocking_reason(GorseFatalError("PUT", "/api/feedback", 401, "key")) == "auth"
