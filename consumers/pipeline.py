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
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from consumers.coalesce import PlanBuilder, WritePlan, coalesce
from consumers.deadletter import DeadLetter
from consumers.events import EVENTS_TABLE, decode_event
from consumers.metrics import Metrics
from consumers.protocols import DeadLetterStore, Sink
from consumers.records import ShardRecord
from gorse_cdc.dms.record import decode_record
from gorse_cdc.errors import GorseFatalError, GorseRetriableError, PermanentRecordError
from gorse_cdc.mapping import Mapper
from gorse_cdc.mapping.ops import Operation
from gorse_cdc.refresh_records import decode_refresh
from gorse_cdc.retry import ErrorClass, FailedAttempt, RetryPolicy, classify, retry_async

log = logging.getLogger(__name__)
DESTRUCTIVE_CONTROL = frozenset({"drop-table", "truncate-table", "truncate"})
WRITE_RETRY = RetryPolicy(base_s=0.1, cap_s=10.0)  # no limit: progress holds until it applies
STOP_CHECK_S = 0.1  # how often a backoff pause looks at should_stop


def blocking_reason(error: BaseException) -> str | None:
    """Why a failure is the pipeline's own (auth, routing, payload limit, connectivity or TLS),
    as a bounded metric label; None for a failure that is Gorse being busy (429, 5xx)."""
    if isinstance(error, GorseFatalError):
        return {401: "auth", 403: "auth", 404: "routing", 413: "payload_too_large"}.get(
            error.status or 0, "misconfigured"
        )
    if isinstance(error, GorseRetriableError) and error.status is None:
        return "connectivity"  # refused, reset, TLS handshake, timeout: nothing came back
    return None


def classify_write(error: BaseException) -> ErrorClass:
    """The shared classification, except that a failure of the pipeline itself holds progress
    (retried, alerting) instead of failing the shard: it is fixed by an operator (a key, a URL,
    a certificate), and no record is at fault, so none may be dead-lettered."""
    if isinstance(error, GorseFatalError):
        return ErrorClass.RETRIABLE
    return classify(error)


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
        self.blocked: str | None = None  # why writes cannot progress (readyz says so)
        self.last_failure: dict[str, str] = {}  # shard -> the last failed call, while it retries

    # ---- decode and map (pure) -----------------------------------------------------------
    def decode(self, records: Sequence[ShardRecord]) -> tuple[list[Decoded], BatchOutcome]:
        good: list[Decoded] = []
        outcome = BatchOutcome()
        for rec in records:
            table = operation = None
            refresh = decode_refresh(rec.data)
            if refresh is not None:
                good.append(Decoded(rec, "gorse-cdc", "refresh", [refresh], None))
                continue
            try:
                event = decode_event(rec.data)
                if event is not None:  # an engagement event (the gateway's stream)
                    table, operation = EVENTS_TABLE, "insert"
                    ops: list[Operation] = [self.mapper.map_event(event)]
                    good.append(Decoded(rec, table, operation, ops, _parse_ts(event.get("ts"))))
                    continue
                dms = decode_record(rec.data)
                table, operation = dms.table or None, dms.operation
                if not dms.is_data:
                    self.metrics.records_skipped.labels(dms.operation).inc()
                    outcome.skipped += 1
                    if dms.operation in DESTRUCTIVE_CONTROL:
                        self._destructive(rec, str(dms.operation), dms.table or "")
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

    def _destructive(self, rec: ShardRecord, operation: str, table: str) -> None:
        """DROP TABLE / TRUNCATE in the source: Gorse is left as it is (a mass delete from one
        control record is not the stream's call); an operator decides, then the reconcile."""
        self.metrics.destructive_control_records.labels(operation, table).inc()
        log.error(
            "%s of table %s in the source: Gorse is NOT changed; run the reconcile once the "
            "source is as intended (gorse-cdc reconcile --dry-run first)",
            operation,
            table,
            extra={"event": "destructive_control", "shard": rec.shard_id, "sequence": rec.sequence_number},
        )

    # ---- apply -------------------------------------------------------------------------------
    async def apply(self, records: Sequence[ShardRecord], should_stop: Callable[[], bool]) -> BatchOutcome:
        """Apply a batch; on return every record is applied, skipped or dead-lettered."""
        self.metrics.batch_size.observe(len(records))
        good, outcome = self.decode(records)
        shard = records[0].shard_id if records else ""
        try:
            await self._write(good, outcome, should_stop, shard)
        finally:
            self.last_failure.pop(shard, None)
        await self._settle_letters(outcome, should_stop)
        return outcome

    async def collect(
        self, records: Sequence[ShardRecord], builder: PlanBuilder, should_stop: Callable[[], bool]
    ) -> BatchOutcome:
        """Decode and map a batch into ``builder`` (a replay's whole-range plan) instead of
        writing it; undecodable records are dead-lettered now, as ``apply`` would."""
        good, outcome = self.decode(records)
        for d in good:
            builder.extend(d.ops)
        outcome.applied += len(good)
        await self._settle_letters(outcome, should_stop)
        return outcome

    async def write_plan(self, plan: WritePlan, should_stop: Callable[[], bool]) -> None:
        """Write a coalesced plan, retried like a batch. A refusal of its content cannot be
        pinned on one record here: PermanentRecordError propagates."""
        if not plan.empty:
            await self._retrying(lambda: self.sink.write(plan), should_stop)

    async def _settle_letters(self, outcome: BatchOutcome, should_stop: Callable[[], bool]) -> None:
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

    async def _write(
        self, good: list[Decoded], outcome: BatchOutcome, should_stop: Callable[[], bool], shard: str = ""
    ) -> None:
        if not good:
            return
        plan = coalesce(op for d in good for op in d.ops)
        try:
            await self._retrying(lambda: self.sink.write(plan), should_stop, shard)
        except PermanentRecordError as e:
            if len(good) == 1:
                d = good[0]
                outcome.dead_letters.append(self._letter(d.record, e, d.table, d.operation))
                return
            half = len(good) // 2
            log.info("bisecting a refused batch of %d records", len(good), extra={"reason": str(e)})
            await self._write(good[:half], outcome, should_stop, shard)
            await self._write(good[half:], outcome, should_stop, shard)
            return
        now = datetime.now(UTC)
        applied: Counter[tuple[str, str]] = Counter()
        observe = self.metrics.freshness.observe
        for d in good:
            applied[d.table, d.operation] += 1
            if d.committed_at is not None:
                observe(max(0.0, (now - d.committed_at).total_seconds()))
        for (table, operation), n in applied.items():  # one labels() lookup per kind, not per record
            self.metrics.records_applied.labels(table, operation).inc(n)
        outcome.applied += len(good)

    async def _retrying(
        self, call: Callable[[], Awaitable[None]], should_stop: Callable[[], bool], shard: str = ""
    ) -> None:
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
            self.last_failure[shard] = f"{type(failed.error).__name__}: {failed.error}"
            reason = blocking_reason(failed.error)
            if reason is None:
                log.warning("retriable failure, retrying in %.2f s: %s", failed.delay_s, failed.error)
                return
            first = self.blocked is None
            self.blocked = reason
            self.metrics.pipeline_blocked.set(1)
            self.metrics.pipeline_errors.labels(reason).inc()
            if first or failed.number % 20 == 0:
                log.error(
                    "pipeline blocked (%s): %s; nothing is applied, dead-lettered or checkpointed "
                    "until it is fixed (retrying in %.1f s)",
                    reason,
                    failed.error,
                    failed.delay_s,
                    extra={"event": "pipeline_blocked", "reason": reason},
                )

        await retry_async(attempt, policy=self.retry, classify=classify_write, on_retry=on_retry, sleep=pause)
        if self.blocked is not None:
            log.info("pipeline unblocked (was: %s)", self.blocked, extra={"event": "pipeline_unblocked"})
            self.blocked = None
            self.metrics.pipeline_blocked.set(0)
