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
from consumers.replay.borrow import BorrowedLeaseLostError, LeaseBorrow, live_owners, live_stop
from consumers.replay.checkpoints import ReplayCheckpoints, is_finished
from consumers.replay.dryrun import DryRunSink
from consumers.replay.plan import RecordFilter, ReplaySummary, StopPoint, shard_families
from consumers.replay.redrive import CollectingStore, S3Letters, SqsLetters, as_record, sort_out
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
        self._borrowed: set[str] = set()  # shards whose lease this replay borrowed

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

    def _applier(
        self,
        clients: Clients,
        source: str,
        *,
        label: str | None = None,
        tell_owners: bool = False,
        **kw: Any,
    ) -> Applier:
        """The shared apply path, filtered, rate-limited and counted; in a dry run its sink and
        dead-letter store only count."""
        mapper = build_mapper(self.settings)
        sink = (
            DryRunSink()
            if self.dry_run
            else gorse_sink(
                self.settings, clients, mapper, publish=False, metrics=self.metrics, tell_owners=tell_owners
            )
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
        """Every family of shards (a shard with its parents and children) is read into one
        coalesced plan and written once, under the borrowed leases of all its shards; then
        the liked labels of every user the replay touched are recomputed once every item is
        final (families are written in parallel, so a user's plan may have run before an item
        it likes was written); the borrowed leases are returned only after that. A lease lost
        meanwhile (the replay stopped past the failover time) stops the replay with nothing
        more written for that family (LeaseLostError, exit code 2)."""
        self._refuse_operation_filter()
        stream = stream or self.settings.kinesis.stream_name
        started_at = datetime.now(UTC)
        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, self.settings, self.metrics)
            cps = await self._checkpoints(clients)
            borrow = await self._borrow(clients)
            if borrow is not None and (stop.timestamp is not None or stop.sequence_number is not None):
                raise FatalError(
                    "a live consumer is running on this stream: a replay beside it must end at its "
                    "checkpoints, so --until-timestamp / --until-sequence are refused (the range's "
                    "final state would set back every key changed after the bound). Drop the bound "
                    "(the replay then stops at the live checkpoints), or stop the consumer first"
                )
            if borrow is not None:
                renewing = asyncio.create_task(borrow.keep_renewed())
                stack.callback(renewing.cancel)
                stack.push_async_callback(self._return_leases, borrow)
            mapper = build_mapper(self.settings)
            # one sink for every family (one item cache, one lock per user). Beside a live
            # consumer, likers of edited items are told through refresh records on their own
            # shards (which the replay may not hold); without one, written here directly
            sink = (
                DryRunSink()
                if self.dry_run
                else gorse_sink(
                    self._on_stream(stream), clients, mapper, publish=borrow is not None, metrics=self.metrics
                )
            )
            dead = CollectingStore() if self.dry_run else None
            inner = build_applier(
                self.settings, clients, self.metrics, source_name=stream, sink=sink, dead_letters=dead
            )
            try:
                families = shard_families(await list_shards(clients.kinesis, stream), shards)
            except ValueError as e:
                raise FatalError(f"replay kinesis: {e}") from None
            try:  # one family failing (a lease lost) cancels the others before leases go back
                async with asyncio.TaskGroup() as tg:
                    for f in families:
                        tg.create_task(
                            self._family(clients, cps, borrow, inner, stream, f, start, stop, started_at)
                        )
            except* Exception as group:
                raise group.exceptions[0] from None
            if self._stop.is_set():
                return self.summary
            if isinstance(sink, GorseSink):
                await self._settle_liked_labels(sink, borrow)
        return self.summary

    def _on_stream(self, stream: str) -> Settings:
        """The settings with ``stream`` as the live stream (where refresh records go)."""
        s = self.settings
        return s.model_copy(update={"kinesis": s.kinesis.model_copy(update={"stream_name": stream})})

    def _refuse_operation_filter(self) -> None:
        """An operation filter drops some of a key's changes and keeps others (a delete dropped,
        the insert before it kept): the key would be written in a state it never had after
        that change, an erased user brought back. Only a dry run may use it."""
        if self.filter.operations and not self.dry_run:
            raise FatalError(
                f"--operations {' '.join(sorted(self.filter.operations))} would write keys without their "
                "later changes (a deleted user's ratings put back): it is allowed only with --dry-run. "
                "Use --tables to limit what is written (every change of a key is in one table)"
            )

    async def _settle_liked_labels(self, sink: GorseSink, borrow: LeaseBorrow | None) -> None:
        """Only users of shards the replay borrowed (or every user, with no live consumer):
        likers on other shards were told through refresh records."""
        users = sorted(self._touched | sink.refreshed)
        if not users or sink.mapper.liked_feedback_type is None:
            return
        sink.cache.clear()
        tqdm.write(f"recomputing the liked labels of {len(users)} users")
        borrowed = self._borrowed
        for start in range(0, len(users), 500):
            write = sink.liked.write(users[start : start + 500], {}, patch_only=True)
            await (borrow.guarded(borrowed, write) if borrow is not None and borrowed else write)

    async def _return_leases(self, borrow: LeaseBorrow) -> None:
        for shard in list(borrow.held):
            await borrow.release(shard)

    async def _family(
        self,
        clients: Clients,
        cps: ReplayCheckpoints,
        borrow: LeaseBorrow | None,
        inner: BatchApplier,
        stream: str,
        family: list[str],
        start: StartPosition,
        stop: StopPoint,
        started_at: datetime,
    ) -> None:
        """Borrow the leases of every open shard of the family, read each shard (parents
        first) up to its live checkpoint into one plan, write the plan once while every lease
        borrowed may be written, then mark the family's shards replayed."""
        todo = []
        for shard in family:
            if is_finished(await cps.position(shard)):
                log.info("shard already replayed by job %s", self.job, extra={"shard": shard})
            else:
                todo.append(shard)
        if not todo:
            return
        stops: dict[str, StopPoint | None] = {}
        mine: list[str] = []
        for shard in todo:  # parents first: the live consumer writes a child only after its parent ended
            lease = await borrow.acquire(shard) if borrow is not None else None
            stops[shard] = stop
            if borrow is None:
                continue
            if shard in borrow.held:
                mine.append(shard)
                self._borrowed.add(shard)
            live = live_stop(lease)
            if live == "":
                log.info("the live consumer applied nothing on this shard yet", extra={"shard": shard})
                stops[shard] = None
            elif live is not None:  # never past what the live consumer applied
                cap = min(int(live), int(stop.sequence_number or live))
                stops[shard] = replace(stop, sequence_number=str(cap), at_tip=False)
        builder = PlanBuilder()
        for shard in todo:
            bound = stops[shard]
            if bound is not None and not await self._read_shard(
                builder, inner, clients, stream, shard, start, bound, started_at
            ):
                return
        plan = builder.build()
        where = todo[0] if len(todo) == 1 else f"{', '.join(todo)} (one lineage)"
        tqdm.write(f"{where}: {builder.operations} changes coalesced into {plan.size()} writes")
        write = self._write_plan(inner, plan)
        try:
            await (borrow.guarded(mine, write) if borrow is not None and mine else write)
        except LeaseLostError as e:
            raise BorrowedLeaseLostError(e.shard_id, where) from None
        self._touched |= plan.liked_users
        if not self.dry_run:
            for shard in todo:
                await cps.finished(shard)

    async def _read_shard(
        self,
        builder: PlanBuilder,
        inner: BatchApplier,
        clients: Clients,
        stream: str,
        shard: str,
        start: StartPosition,
        stop: StopPoint,
        started_at: datetime,
    ) -> bool:
        """Read the range through the live consumer's ShardWorker into ``builder``; False when
        the replay stopped before the end of the range (then nothing is written)."""
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
            return False
        return True

    async def _write_plan(self, inner: BatchApplier, plan: WritePlan) -> None:
        await inner.write_plan(plan, self._stop.is_set)

    async def _refuse_beside_live(self, clients: Clients, what: str) -> bool:
        """An archive replay or a re-drive applies old records one batch at a time, without
        the live checkpoints to stop at: beside a live consumer it could set a key back (an
        erased user brought back until the reconcile). Refused unless ``beside_live``; then
        True: it runs beside the live consumer and tells the owners of the users it writes."""
        if self.dry_run:
            return False
        s = self.settings
        table = LeaseTable(clients.dynamodb, s.leases.table)
        live = await live_owners(table, s.leases.failover_ms / 1000)
        if live and self.beside_live:
            log.warning("%s runs beside a live consumer (%s): --beside-live", what, ", ".join(live))
            return True
        if live:
            raise FatalError(
                f"a live consumer ({', '.join(live)}) is running on lease table {s.leases.table}: {what} "
                "applies old records without stopping at its checkpoints and could set keys back "
                "(an erased user brought back). Stop the consumer first, or pass --beside-live and "
                "run the reconcile afterwards; a Kinesis replay (gorse-cdc replay kinesis) is safe beside it"
            )
        return False

    # ---- S3 archive -----------------------------------------------------------------------------
    async def archive(
        self, since: datetime | None, until: datetime | None, *, include_load: bool = False
    ) -> ReplaySummary:
        self._refuse_operation_filter()
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, s, self.metrics)
            beside = await self._refuse_beside_live(clients, "an archive replay")
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
                s.source_schema,
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
            applier = self._applier(clients, source_name, label=ARCHIVE_SHARD, tell_owners=beside)
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
    async def dead_letters(self, limit: int = 100_000, *, unordered: bool = False) -> ReplaySummary:
        """Re-drive the store. Letters that would set a key back are removed unapplied and
        counted (consumers.replay.superseded); ``unordered`` skips the later-change check."""
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, s, self.metrics)
            beside = await self._refuse_beside_live(clients, "a dead-letter re-drive")
            store: S3Letters | SqsLetters
            if s.dead_letters.kind == "sqs":
                store = SqsLetters(dead_letter_store(s, clients))  # type: ignore[arg-type]
            else:
                store = S3Letters(clients.s3, s.s3.bucket, s.dead_letters.s3_prefix)
            stored = await store.fetch(limit)
            # per shard in sequence order: the order they were first read in
            stored.sort(key=lambda x: (x.letter.shard_id, int(x.letter.sequence_number or 0)))
            mapper = build_mapper(s)
            stored = await sort_out(
                s,
                clients,
                mapper,
                store,
                stored,
                self.summary,
                unordered=unordered,
                dry_run=self.dry_run,
                keep=lambda letter: self.filter.keep(as_record(letter)),
            )
            bar = self._bar("dead letters", total=len(stored))
            again = CollectingStore()
            applier = self._applier(clients, "dead-letters", dead_letters=again, tell_owners=beside)
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
