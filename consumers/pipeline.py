"""decode -> map -> coalesce -> write, for one batch of one shard. The reusable core of the
consumer and of the replay tool.

Outcomes per record are explicit: applied, skipped (DMS control records) or dead-lettered.
When ``apply`` returns, every record of the batch is one of those, durably: the caller may
checkpoint the batch's last sequence number. Transient failures (RetriableError) hold
progress: the same plan is retried under the shared policy (gorse_cdc.retry: what is
retriable, capped full-jitter backoff, Gorse's Retry-After as a floor) until it applies or the
caller asks to stop (then ``Stopped`` is raised and nothing may be checkpointed). A plan the
sink refuses permanently (PermanentRecordError) is bisected until the poison record is
isolated and dead-lettered; anything else that is not retriable propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from consumers.coalesce import coalesce
from consumers.deadletter import DeadLetter
from consumers.metrics import Metrics
from consumers.protocols import DeadLetterStore, Sink
from consumers.records import ShardRecord
from gorse_cdc.dms.record import decode_record
from gorse_cdc.errors import PermanentRecordError
from gorse_cdc.mapping import Mapper
from gorse_cdc.mapping.ops import Operation
from gorse_cdc.retry import FailedAttempt, RetryPolicy, retry_async

log = logging.getLogger(__name__)
WRITE_RETRY = RetryPolicy(base_s=0.1, cap_s=10.0)  # no limit: progress holds until it applies
STOP_CHECK_S = 0.1  # how often a backoff pause looks at should_stop


class Stopped(Exception):
    """The caller asked to stop while a batch was not yet applied: do not checkpoint it."""


@dataclass(slots=True)
class Decoded:
    record: ShardRecord
    table: str
    operation: str
    ops: list[Operation]
    committed_at: datetime | None


@dataclass
class BatchOutcome:
    applied: int = 0
    skipped: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class BatchApplier:
    def __init__(
        self,
        mapper: Mapper,
        sink: Sink,
        dead_letters: DeadLetterStore,
        metrics: Metrics | None = None,
        *,
        source_name: str = "",
        retry: RetryPolicy = WRITE_RETRY,
    ) -> None:
        self.mapper = mapper
        self.sink = sink
        self.dead_letters = dead_letters
        self.metrics = metrics or Metrics()
        self.source_name = source_name
        self.retry = retry

    # ---- decode and map (pure) -----------------------------------------------------------
    def decode(self, records: Sequence[ShardRecord]) -> tuple[list[Decoded], BatchOutcome]:
        good: list[Decoded] = []
        outcome = BatchOutcome()
        for rec in records:
            table = operation = None
            try:
                dms = decode_record(rec.data)
                table, operation = dms.table or None, dms.operation
                if not dms.is_data:
                    self.metrics.records_skipped.labels(dms.operation).inc()
                    outcome.skipped += 1
                    continue
                ops = self.mapper.map_change(dms.table, dms.operation, dms.data, dms.before_image)
            except PermanentRecordError as e:
                outcome.dead_letters.append(self._letter(rec, e, table, operation))
                continue
            committed = _parse_ts(dms.commit_timestamp) or rec.arrived_at
            good.append(Decoded(rec, dms.table, dms.operation, ops, committed))
        return good, outcome

    def _letter(
        self, rec: ShardRecord, error: Exception, table: str | None, operation: str | None
    ) -> DeadLetter:
        return DeadLetter(
            rec.data,
            str(error),
            type(error).__name__,
            rec.shard_id,
            rec.sequence_number,
            table,
            operation,
            self.source_name,
            datetime.now(UTC),
        )

    # ---- apply -------------------------------------------------------------------------------
    async def apply(self, records: Sequence[ShardRecord], should_stop: Callable[[], bool]) -> BatchOutcome:
        """Apply a batch; on return every record is applied, skipped or dead-lettered."""
        self.metrics.batch_size.observe(len(records))
        good, outcome = self.decode(records)
        await self._write(good, outcome, should_stop)
        if outcome.dead_letters:
            await self._retrying(lambda: self.dead_letters.put(outcome.dead_letters), should_stop)
            for d in outcome.dead_letters:
                self.metrics.records_dead_lettered.labels(d.table or "", d.operation or "").inc()
                log.warning(
                    "dead-lettered record: %s",
                    d.reason,
                    extra={
                        "event": "dead_letter",
                        "shard": d.shard_id,
                        "sequence": d.sequence_number,
                        "table": d.table,
                        "operation": d.operation,
                    },
                )
        return outcome

    async def _write(
        self, good: list[Decoded], outcome: BatchOutcome, should_stop: Callable[[], bool]
    ) -> None:
        if not good:
            return
        plan = coalesce(op for d in good for op in d.ops)
        try:
            await self._retrying(lambda: self.sink.write(plan), should_stop)
        except PermanentRecordError as e:
            if len(good) == 1:
                d = good[0]
                outcome.dead_letters.append(self._letter(d.record, e, d.table, d.operation))
                return
            half = len(good) // 2
            log.info("bisecting a refused batch of %d records", len(good), extra={"reason": str(e)})
            await self._write(good[:half], outcome, should_stop)
            await self._write(good[half:], outcome, should_stop)
            return
        now = datetime.now(UTC)
        for d in good:
            self.metrics.records_applied.labels(d.table, d.operation).inc()
            if d.committed_at is not None:
                self.metrics.freshness.observe(max(0.0, (now - d.committed_at).total_seconds()))
        outcome.applied += len(good)

    async def _retrying(self, call: Callable[[], Awaitable[None]], should_stop: Callable[[], bool]) -> None:
        async def attempt() -> None:
            if should_stop():
                raise Stopped
            await call()

        async def pause(delay: float) -> None:
            deadline = time.monotonic() + delay
            while (left := deadline - time.monotonic()) > 0:
                if should_stop():
                    raise Stopped
                await asyncio.sleep(min(STOP_CHECK_S, left))

        def on_retry(failed: FailedAttempt) -> None:
            self.metrics.gorse_retries.inc()
            log.warning("retriable failure, retrying in %.2f s: %s", failed.delay_s, failed.error)

        await retry_async(attempt, policy=self.retry, on_retry=on_retry, sleep=pause)
