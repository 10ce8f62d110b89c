"""Runs a replay: Kinesis shards (parents before children), the S3 archive or the dead-letter
store, through the shared applier, rate-limited, with progress per shard and a summary.

A Kinesis replay never sets a key back (consumers.replay.borrow): beside a live consumer it
borrows each shard's lease, reads only up to the live checkpoint, coalesces the whole range
and writes each key's final state once, then hands the lease back at that checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from tqdm import tqdm

from consumers.coalesce import PlanBuilder, WritePlan
from consumers.kinesis.pacing import PollPacer
from consumers.kinesis.reader import ShardReader, StartPosition
from consumers.kinesis.shards import list_shards
from consumers.leases.lease import LeaseLostError
from consumers.leases.table import LeaseTable
from consumers.metrics import Metrics
from consumers.pipeline import BatchApplier, BatchOutcome
from consumers.protocols import Applier
from consumers.records import ShardRecord
from consumers.replay.archive import ARCHIVE_SHARD, ArchiveSource
from consumers.replay.borrow import LeaseBorrow, live_owners, live_stop
from consumers.replay.checkpoints import ReplayCheckpoints, is_finished
from consumers.replay.dryrun import DryRunSink
from consumers.replay.plan import RecordFilter, ReplaySummary, StopPoint, shard_waves
from consumers.replay.redrive import CollectingStore, S3Letters, SqsLetters, as_record
from consumers.replay.shards import BoundedSource, CoalescingApplier, FilteredApplier, NoCheckpoints
from consumers.shard_worker import ShardState, ShardWorker
from consumers.sink.gorse_sink import GorseSink
from consumers.wiring import Clients, build_applier, build_mapper, dead_letter_store, gorse_sink, open_clients
from gorse_cdc.errors import FatalError
from gorse_cdc.retry import RateLimiter, error_code
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


class Replay:
    def __init__(
        self,
        settings: Settings,
        *,
        job: str | None = None,
        dry_run: bool = False,
        rate: float | None = None,
        record_filter: RecordFilter | None = None,
        progress: bool = True,
        beside_live: bool = False,
    ) -> None:
        self.beside_live = beside_live  # archive / dead letters: run beside a live consumer anyway
        self.settings = settings
        self.job = job or settings.replay.job
        self.dry_run = dry_run
        # records/s, 0 = unlimited; an idle replay may pass one second's worth at once
        self.limiter = RateLimiter(settings.replay.max_records_per_s if rate is None else rate, burst_s=1.0)
        self.filter = record_filter or RecordFilter()
        self.progress = progress and sys.stderr.isatty()
        self.summary = ReplaySummary()
        self.metrics = Metrics()
        self._stop = asyncio.Event()
        self._bars = 0
        self._workers: set[ShardWorker] = set()
        self._touched: set[str] = set()  # users whose liked labels a Kinesis replay wrote

    def stop(self) -> None:
        """Finish the current batches (applied and checkpointed), then stop."""
        self._stop.set()
        for worker in self._workers:
            worker.request_shutdown()

    def _bar(self, desc: str, total: int | None = None, unit: str = "rec") -> tqdm[Any]:
        self._bars += 1
        return tqdm(total=total, desc=desc, unit=unit, position=self._bars - 1, disable=not self.progress)

    async def _apply(self, applier: Applier, records: list[ShardRecord]) -> BatchOutcome:
        return await applier.apply(records, self._stop.is_set)

    def _applier(self, clients: Clients, source: str, *, label: str | None = None, **kw: Any) -> Applier:
        """The shared apply path, filtered, rate-limited and counted; in a dry run its sink and
        dead-letter store only count."""
        mapper = build_mapper(self.settings)
        sink = (
            DryRunSink()
            if self.dry_run
            else gorse_sink(self.settings, clients, mapper, publish=False, metrics=self.metrics)
        )
        dead = CollectingStore() if self.dry_run else kw.pop("dead_letters", None)
        inner = build_applier(
            self.settings, clients, self.metrics, source_name=source, sink=sink, dead_letters=dead
        )
        return FilteredApplier(inner, self.filter, self.limiter, self.summary, label=label)

    async def _checkpoints(self, clients: Clients) -> ReplayCheckpoints:
        cps = ReplayCheckpoints(clients.dynamodb, self.settings.replay.table, self.job)
        await cps.open()
        return cps

    # ---- Kinesis ------------------------------------------------------------------------------
    async def _borrow(self, clients: Clients) -> LeaseBorrow | None:
        """The live consumer's leases, to borrow; None when no live consumer has a lease
        table (nothing else writes the stream's keys: the replay reads to its stop point)."""
        s = self.settings
        if self.dry_run:
            return None
        try:
            await clients.dynamodb.describe_table(TableName=s.leases.table)
        except ClientError as e:
            if error_code(e) != "ResourceNotFoundException":
                raise
            log.info("no live lease table %s: replaying without borrowing leases", s.leases.table)
            return None
        waiting: set[str] = set()

        def on_wait(shard: str, owner: str) -> None:
            if shard not in waiting:
                waiting.add(shard)
                tqdm.write(f"{shard}: waiting for the live consumer {owner or ''} to hand the lease over")

        owner = f"replay:{self.job}:{uuid.uuid4().hex[:6]}"
        table = LeaseTable(clients.dynamodb, s.leases.table)
        return LeaseBorrow(table, owner, s.leases.failover_ms / 1000, on_wait=on_wait)

    async def kinesis(
        self,
        start: StartPosition,
        stop: StopPoint,
        shards: set[str] | None = None,
        stream: str | None = None,
    ) -> ReplaySummary:
        """Every shard's range coalesced and written once; then the liked labels of every
        user the replay touched are recomputed once every item is final (shards are written
        in parallel, so a user's plan may have run before an item it likes was written); the
        borrowed leases are returned only after that."""
        stream = stream or self.settings.kinesis.stream_name
        started_at = datetime.now(UTC)
        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, self.settings, self.metrics)
            cps = await self._checkpoints(clients)
            borrow = await self._borrow(clients)
            if borrow is not None:
                renewing = asyncio.create_task(borrow.keep_renewed())
                stack.callback(renewing.cancel)
                stack.push_async_callback(self._return_leases, borrow)
            mapper = build_mapper(self.settings)
            # one sink for every shard (one item cache, one lock per user), writing likers
            # itself: the replay holds their shards' leases, nobody else writes them now
            sink = (
                DryRunSink()
                if self.dry_run
                else gorse_sink(self.settings, clients, mapper, publish=False, metrics=self.metrics)
            )
            dead = CollectingStore() if self.dry_run else None
            inner = build_applier(
                self.settings, clients, self.metrics, source_name=stream, sink=sink, dead_letters=dead
            )
            waves = shard_waves(await list_shards(clients.kinesis, stream), shards)
            for wave in waves:
                await asyncio.gather(
                    *(
                        self._shard(clients, cps, borrow, inner, stream, s, start, stop, started_at)
                        for s in wave
                    )
                )
                if self._stop.is_set():
                    return self.summary
            if isinstance(sink, GorseSink):
                await self._settle_liked_labels(sink, borrow)
        return self.summary

    async def _settle_liked_labels(self, sink: GorseSink, borrow: LeaseBorrow | None) -> None:
        users = sorted(self._touched | sink.refreshed)
        if not users or sink.mapper.liked_feedback_type is None:
            return
        sink.cache.clear()
        tqdm.write(f"recomputing the liked labels of {len(users)} users")
        for start in range(0, len(users), 500):
            if borrow is not None and not all(borrow.may_write(s) for s in borrow.held):
                raise LeaseLostError(next(s for s in borrow.held if not borrow.may_write(s)))
            await sink.liked.write(users[start : start + 500], {}, patch_only=True)

    async def _return_leases(self, borrow: LeaseBorrow) -> None:
        for shard in list(borrow.held):
            await borrow.release(shard)

    async def _shard(
        self,
        clients: Clients,
        cps: ReplayCheckpoints,
        borrow: LeaseBorrow | None,
        inner: BatchApplier,
        stream: str,
        shard: str,
        start: StartPosition,
        stop: StopPoint,
        started_at: datetime,
    ) -> None:
        if is_finished(await cps.position(shard)):
            log.info("shard already replayed by job %s", self.job, extra={"shard": shard})
            return
        lease = await borrow.acquire(shard) if borrow is not None else None
        if borrow is not None:
            live = live_stop(lease)
            if live == "":
                log.info("the live consumer applied nothing on this shard yet", extra={"shard": shard})
                await cps.finished(shard)
                return
            if live is not None:  # never past what the live consumer applied
                cap = min(int(live), int(stop.sequence_number or live))
                stop = replace(stop, sequence_number=str(cap), at_tip=False)
        await self._replay_shard(cps, borrow, inner, clients, stream, shard, start, stop, started_at)

    async def _replay_shard(
        self,
        cps: ReplayCheckpoints,
        borrow: LeaseBorrow | None,
        inner: BatchApplier,
        clients: Clients,
        stream: str,
        shard: str,
        start: StartPosition,
        stop: StopPoint,
        started_at: datetime,
    ) -> None:
        """Read the range through the live consumer's ShardWorker into one coalesced plan,
        then write each key's final state once."""
        builder = PlanBuilder()
        applier = FilteredApplier(CoalescingApplier(inner, builder), self.filter, self.limiter, self.summary)
        reader = ShardReader(clients.kinesis, stream, shard, start, self.metrics)
        worker = ShardWorker(
            BoundedSource(reader, stop, started_at, self._bar(shard)),
            applier,
            NoCheckpoints(),  # nothing is written before the range is read: nothing to resume
            pacer=PollPacer(0.0),
            batch_limit=lambda: self.settings.replay.batch_size,
            metrics=self.metrics,
        )
        self._workers.add(worker)
        try:
            state = await worker.run()
        finally:
            self._workers.discard(worker)
        if state is ShardState.FAILED:
            assert worker.error is not None
            raise worker.error
        if state is not ShardState.SHARD_ENDED:
            log.warning("replay stopped before the end of the range: nothing written", extra={"shard": shard})
            return
        plan = builder.build()
        tqdm.write(f"{shard}: {builder.operations} changes coalesced into {plan.size()} writes")
        write = self._write_plan(inner, plan)
        await (borrow.guarded(shard, write) if borrow is not None and shard in borrow.held else write)
        self._touched |= plan.liked_users
        if not self.dry_run:
            await cps.finished(shard)

    async def _write_plan(self, inner: BatchApplier, plan: WritePlan) -> None:
        await inner.write_plan(plan, self._stop.is_set)

    async def _refuse_beside_live(self, clients: Clients, what: str) -> None:
        """An archive replay or a re-drive applies old records one batch at a time, without
        the live checkpoints to stop at: beside a live consumer it could set a key back (an
        erased user brought back until the reconcile). Refused unless ``beside_live``."""
        if self.beside_live or self.dry_run:
            return
        s = self.settings
        table = LeaseTable(clients.dynamodb, s.leases.table)
        live = await live_owners(table, s.leases.failover_ms / 1000)
        if live:
            raise FatalError(
                f"a live consumer ({', '.join(live)}) is running on lease table {s.leases.table}: {what} "
                "applies old records without stopping at its checkpoints and could set keys back "
                "(an erased user brought back). Stop the consumer first, or pass --beside-live and "
                "run the reconcile afterwards; a Kinesis replay (gorse-cdc replay kinesis) is safe beside it"
            )

    # ---- S3 archive -----------------------------------------------------------------------------
    async def archive(
        self, since: datetime | None, until: datetime | None, *, include_load: bool = False
    ) -> ReplaySummary:
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, s, self.metrics)
            await self._refuse_beside_live(clients, "an archive replay")
            cps = await self._checkpoints(clients)
            position = await cps.position(ARCHIVE_SHARD)
            if is_finished(position):
                log.info("archive already replayed by job %s (use --restart)", self.job)
                return self.summary
            spec = build_mapper(s).spec
            tables = {name: rule.entity != "feedback" for name, rule in spec.tables.items()}
            source = ArchiveSource(
                clients.s3,
                s.s3.bucket,
                s.s3.prefix,
                s.source.schema_name,
                tables,
                since=since,
                until=until,
                include_load=include_load,
                timestamp_column=bool(s.s3.timestamp_column),
            )
            files = await source.files()
            # archive positions are per run (file order), not per record as Kinesis sequence
            # numbers are: the run's start time keeps its dead letters apart from other runs'
            run = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            source_name = f"s3://{s.s3.bucket}/{s.s3.prefix}/run-{run}"
            applier = self._applier(clients, source_name, label=ARCHIVE_SHARD)
            bar = self._bar("s3 archive", total=sum(f.size for fs in files.values() for f in fs), unit="B")
            bar.unit_scale = True
            batch: list[ShardRecord] = []
            last_pos = position
            try:
                async for record, pos in source.records(files, position):
                    batch.append(record)
                    last_pos = pos
                    if len(batch) >= s.replay.batch_size:
                        await self._flush(applier, cps, batch, last_pos)
                        bar.update(sum(len(r.data) for r in batch))
                        batch = []
                    if self._stop.is_set():
                        return self.summary
                await self._flush(applier, cps, batch, last_pos)
                if not self.dry_run:
                    await cps.finished(ARCHIVE_SHARD)
            finally:
                bar.close()
        return self.summary

    async def _flush(
        self, applier: Applier, cps: ReplayCheckpoints, batch: list[ShardRecord], pos: str | None
    ) -> None:
        if not batch:
            return
        await self._apply(applier, batch)
        if not self.dry_run and pos is not None:
            await cps.checkpoint(ARCHIVE_SHARD, pos)

    # ---- dead letters ---------------------------------------------------------------------------
    async def dead_letters(self, limit: int = 100_000) -> ReplaySummary:
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, s, self.metrics)
            await self._refuse_beside_live(clients, "a dead-letter re-drive")
            store: S3Letters | SqsLetters
            if s.dead_letters.kind == "sqs":
                store = SqsLetters(dead_letter_store(s, clients))  # type: ignore[arg-type]
            else:
                store = S3Letters(clients.s3, s.s3.bucket, s.dead_letters.s3_prefix)
            stored = await store.fetch(limit)
            # per shard in sequence order: the order they were first read in
            stored.sort(key=lambda x: (x.letter.shard_id, int(x.letter.sequence_number or 0)))
            bar = self._bar("dead letters", total=len(stored))
            again = CollectingStore()
            applier = self._applier(clients, "dead-letters", dead_letters=again)
            try:
                for item in stored:
                    again.letters.clear()
                    outcome = await self._apply(applier, [as_record(item.letter)])
                    if self.dry_run:
                        pass
                    elif again.letters:
                        retry = again.letters[0]
                        await store.again(item, _keep_origin(retry, item.letter))
                    elif outcome.applied or outcome.skipped:
                        await store.done(item)
                        self.summary.redriven += 1
                    bar.update(1)
                    if self._stop.is_set():
                        break
            finally:
                bar.close()
        return self.summary


def _keep_origin(new: Any, old: Any) -> Any:
    """The new failure with the original origin (source, shard, sequence)."""
    from dataclasses import replace

    return replace(new, source=old.source, shard_id=old.shard_id, sequence_number=old.sequence_number)
