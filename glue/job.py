"""The reconcile, phase by phase (the one place that wires the pure Spark core to I/O).

read S3 -> compute (latest rows, expected state) -> export Gorse -> diff -> repair -> report.
Exit codes for schedulers (glue.vocabulary.ExitCode): 0 no drift, 1 drift repaired (or found
with --dry-run, or source rows that cannot be mapped), 2 failure (raised as FatalError, or
writes that Gorse refused). The report is a glue.report.ReconcileReport.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from glue.actual import KINDS, Export, actual_frame, stage_export
from glue.changes import latest_rows, read_changes
from glue.decode import file_rows
from glue.diff import decode_key, diff_kind
from glue.expected import ExpectedState, expected_state
from glue.files import (
    DirStore,
    FileStore,
    S3Store,
    SourceFilesError,
    TableFiles,
    cutoff_of,
    discover,
    newer_files,
)
from glue.guard import DeferralRefresh, Deferred, touched_by
from glue.refusal import planned_counts, refusal
from glue.repair import PHASES, Repairer, RepairResult
from glue.report import InvalidRow, InvalidRows, ReconcileReport, drift_section, render, report_key
from glue.vocabulary import DriftClass, ExitCode, Kind
from glue.writes import GorseWriter
from gorse_cdc.gorse import GorseClient
from gorse_cdc.mapping import Mapper, load_spec
from gorse_cdc.refresh_records import RefreshPublisher
from gorse_cdc.retry import RateLimiter
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)
PERSIST = StorageLevel.MEMORY_AND_DISK


@dataclass
class ReconcileOptions:
    source_dir: Path | None = None  # read DMS output from this folder instead of the bucket
    dry_run: bool = False
    max_writes_per_s: float | None = None
    # re-read drifted keys from the source DB around each write; None: settings.reconcile
    # .source_check, and when that is None too: on when repairing with a source DSN available
    source_check: bool | None = False
    report_dir: Path | None = None  # write the report here instead of s3://bucket/reports/
    staging_dir: Path | None = None  # where the Gorse export is staged (default: temp / S3)
    sample: int = 10
    progress: bool = True
    report_prefix: str = "reports"  # in the bucket (or under report_dir)


@dataclass(frozen=True)
class ReconcileOutcome:
    """A finished run: its typed report and where that was written."""

    result: ReconcileReport
    report_path: str

    @property
    def exit_code(self) -> ExitCode:
        return self.result.exit_code

    @property
    def phases_s(self) -> Mapping[str, float]:
        return self.result.phases_s

    @cached_property
    def report(self) -> dict[str, Any]:
        """The JSON document as printed: the written report plus its ``report_path``."""
        return {**self.result.to_json(), "report_path": self.report_path}


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        log.info("reconcile phase %s ...", name)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def _read_current(
    spark: SparkSession, store: FileStore, settings: Settings, mapper: Mapper, tables: list[TableFiles]
) -> dict[str, DataFrame]:
    current: dict[str, DataFrame] = {}
    for tf in tables:
        key = mapper.table(tf.table).key
        missing = [k for k in key if k not in tf.definition.column_names]
        if missing:
            raise SourceFilesError(f"{tf.table}: key columns {missing} not in its table definition")
        changes = read_changes(spark, store, tf, timestamp_column=bool(settings.s3.timestamp_column))
        current[tf.table] = latest_rows(changes, key, tf.definition.column_names).persist(PERSIST)
    return current


async def _export(settings: Settings, staging: Any, prefix: str) -> dict[Kind, Export]:
    async with GorseClient.from_settings(settings) as client:
        return {kind: await stage_export(client, kind, staging, prefix) for kind in KINDS}


class CdcPoll:
    """Lists the CDC folders again and defers what files not seen before touch (guard step 1),
    plus the likers of a changed item (their liked labels). Used once just before the repair
    and then before repair chunks (guard.DeferralRefresh)."""

    def __init__(
        self,
        store: FileStore,
        settings: Settings,
        mapper: Mapper,
        tables: list[TableFiles],
        exp: ExpectedState,
    ) -> None:
        self.store, self.settings, self.mapper, self.tables, self.exp = store, settings, mapper, tables, exp
        self.seen = {tf.table: set(tf.keys) for tf in tables}

    def __call__(self, d: Deferred) -> int:
        prefix, schema = self.settings.s3.prefix, self.settings.source_schema
        new = Deferred()
        read = 0
        for tf in self.tables:
            names = tf.definition.column_names
            for name in newer_files(self.store, prefix, schema, tf):
                if name.key in self.seen[tf.table]:
                    continue
                rows = file_rows(
                    self.store.read(name.key), name, tf.definition, bool(self.settings.s3.timestamp_column)
                )
                touched_by(
                    self.mapper, tf.table, ((op, dict(zip(names, v, strict=True))) for op, v in rows), new
                )
                self.seen[tf.table].add(name.key)
                read += 1
        fresh_items = new.items - d.items
        d.users |= new.users
        d.items |= new.items
        d.pairs |= new.pairs
        if fresh_items:
            liked = self.exp.feedback.where(
                (F.col("ftype") == F.lit(self.mapper.liked_feedback_type))
                & F.col("item_id").isin(sorted(fresh_items))
            )
            d.users.update(r["user_id"] for r in liked.select("user_id").distinct().collect())
        if read:
            log.info("deferral: %d CDC files newer than the last listing; deferred %s", read, d.counts())
        return read


def _deferred(
    poll: CdcPoll, actual_feedback: DataFrame, cutoff: datetime | None, use_timestamps: bool
) -> Deferred:
    d = Deferred()
    poll(d)
    if use_timestamps and cutoff is not None:
        newer = actual_feedback.where(F.col("ts") > cutoff.timestamp()).select("key").collect()
        for r in newer:
            _, user, item = decode_key(r["key"])
            d.pairs.add((user, item))
            d.users.add(user)
    return d


def source_check_on(options: ReconcileOptions, settings: Settings) -> bool:
    """The option, else the setting, else the safe default: on when repairing with a source DSN."""
    if options.source_check is not None:
        return options.source_check
    if settings.reconcile.source_check is not None:
        return settings.reconcile.source_check
    return not options.dry_run and settings.has_source_dsn


async def _repair(
    settings: Settings,
    options: ReconcileOptions,
    drift: DataFrame,
    counts: Mapping[tuple[Kind, DriftClass], int],
    d: Deferred,
    poll: CdcPoll,
    source_check: bool,
) -> Repairer:
    async with GorseClient.from_settings(settings) as client, _owners_teller(settings, options) as tell:
        writer = None if options.dry_run else GorseWriter(client, settings.consumer.gorse_concurrency, tell)
        check = None
        if source_check and settings.source.engine == "mysql":
            # the repair's re-read of drifted keys speaks PostgreSQL only (docs/mysql.md)
            log.warning("source check: not available for a MySQL source; repairing without it")
            source_check = False
        if source_check:
            from glue.source_check import SourceDbCheck

            check = SourceDbCheck(settings.source_dsn, _mapper(settings), settings.source_schema)
        refresh = DeferralRefresh(d, poll, settings.reconcile.relist_interval_s)
        rep = Repairer(
            writer,
            RateLimiter(options.max_writes_per_s),
            d,
            check=check,
            chunk_size=settings.gorse.batch_size,
            progress=options.progress,
            refresh=refresh.before_chunk,
        )
        try:
            for phase in PHASES:
                total = sum(counts.get((phase.kind, c), 0) for c in phase.classes)
                if total:
                    rows = drift.where(
                        (F.col("kind") == phase.kind.value)
                        & F.col("cls").isin([c.value for c in phase.classes])
                    )
                    await rep.run_phase(phase, rows.toLocalIterator(), total)
        finally:
            if check is not None:
                check.close()
        return rep


@asynccontextmanager
async def _owners_teller(
    settings: Settings, options: ReconcileOptions
) -> AsyncIterator[Callable[[Iterable[str]], Awaitable[None]] | None]:
    """Tells repaired users' live owners through reread refresh records (glue.writes)."""
    if options.dry_run or not settings.reconcile.tell_owners:
        yield None
        return
    session: Any = get_session()
    async with session.create_client("kinesis", **settings.aws_client_kwargs("kinesis")) as kinesis:
        yield RefreshPublisher(kinesis, settings.kinesis.stream_name).tell_rewritten


def _mapper(settings: Settings) -> Mapper:
    return Mapper(load_spec(settings.mapping.path), settings.mapping.zip_privacy)


def _staging(
    spark: SparkSession, settings: Settings, options: ReconcileOptions, run_id: str
) -> tuple[Any, str]:
    if options.staging_dir is not None:
        return DirStore(options.staging_dir), run_id
    if (spark.sparkContext.master or "").startswith("local"):
        return DirStore(Path(tempfile.mkdtemp(prefix="gorse-cdc-reconcile-"))), run_id
    return S3Store(settings.s3.bucket, settings.aws_client_kwargs("s3")), f"reconcile-staging/{run_id}"


def run_reconcile(spark: SparkSession, settings: Settings, options: ReconcileOptions) -> ReconcileOutcome:
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    timer = PhaseTimer()
    mapper = _mapper(settings)
    check_source = source_check_on(options, settings)
    log.info("reconcile %s: source check %s", run_id, "on" if check_source else "off")
    s3 = S3Store(settings.s3.bucket, settings.aws_client_kwargs("s3"))
    store: FileStore = DirStore(options.source_dir) if options.source_dir else s3
    with timer("read_s3"):
        tables = [discover(store, settings.s3.prefix, settings.source_schema, t) for t in mapper.spec.tables]
        cutoff = cutoff_of(tables)
        current = _read_current(spark, store, settings, mapper, tables)
        source_rows = {t: df.count() for t, df in current.items()}
    with timer("compute"):
        exp = expected_state(mapper, current)
        expected = {k: df.persist(PERSIST) for k, df in exp.kinds().items()}
        exp.feedback.persist(PERSIST)
        expected_rows = {k: df.where(F.col("error").isNull()).count() for k, df in expected.items()}
        bad = [df.where(F.col("error").isNotNull()) for df in expected.values()]
        invalid = InvalidRows(
            sum(b.count() for b in bad),
            tuple(InvalidRow(r["key"], r["error"]) for b in bad for r in b.limit(options.sample).collect())[
                : options.sample
            ],
        )
    staging, staging_prefix = _staging(spark, settings, options, run_id)
    try:
        with timer("export_gorse"):
            exports = asyncio.run(_export(settings, staging, staging_prefix))
            skip = frozenset(mapper.spec.events.types.values()) if mapper.spec.events else frozenset()
            actual = {k: actual_frame(spark, staging, e, skip).persist(PERSIST) for k, e in exports.items()}
        with timer("diff"):
            drift = diff_kind(Kind.USERS, expected[Kind.USERS], actual[Kind.USERS])
            for kind in (Kind.ITEMS, Kind.FEEDBACK):
                drift = drift.unionByName(diff_kind(kind, expected[kind], actual[kind]))
            drift = drift.persist(PERSIST)
            kind_tables = {
                Kind.USERS: _table_of(mapper, "user"),
                Kind.ITEMS: _table_of(mapper, "item"),
                Kind.FEEDBACK: _table_of(mapper, "feedback"),
            }
            drift_report = drift_section(drift, kind_tables, options.sample)
            counts = {
                (Kind(r["kind"]), DriftClass(r["cls"])): int(r["count"])
                for r in drift.groupBy("kind", "cls").count().collect()
            }
        repaired, deferred = RepairResult(), Deferred()  # a refused repair writes nothing
        poll = CdcPoll(store, settings, mapper, tables, exp)
        if not options.dry_run:  # what the stream changed since the cut-off is left to it
            deferred = _deferred(poll, actual[Kind.FEEDBACK], cutoff, not check_source)
        # the cap counts the deletes the repair would make: extras the stream owns are not
        planned = planned_counts(drift, counts, deferred)
        refused = refusal(settings, store, tables, planned, {k: e.rows for k, e in exports.items()})
        if refused and options.dry_run:
            log.warning("a repair would be refused: %s", refused)
            refused = None
        if refused:
            log.error("%s", refused)
        with timer("repair"):
            if not refused:
                rep = asyncio.run(_repair(settings, options, drift, counts, deferred, poll, check_source))
                repaired = rep.result
        repair = repaired.report(deferred.counts())
    finally:
        if isinstance(staging, DirStore) and options.staging_dir is None:
            shutil.rmtree(staging.root, ignore_errors=True)
    to_fix = drift_report.total - sum(repaired.deferred.values())
    result = ReconcileReport(
        run_id=run_id,
        started_at=started,
        dry_run=options.dry_run,
        source=store.describe(settings.s3.prefix),
        cutoff=cutoff,
        files_read={tf.table: len(tf.files) for tf in tables},
        source_rows=source_rows,
        expected=expected_rows,
        invalid_source_rows=invalid,
        actual={k: e.rows for k, e in exports.items()},
        actual_export={k: e.source for k, e in exports.items()},
        drift=drift_report,
        repair=repair,
        phases_s=dict(timer.seconds),
        finished_at=datetime.now(UTC),
        exit_code=ExitCode.FAILURE
        if refused
        else ExitCode.of(failures=len(repaired.failures), to_fix=to_fix, invalid=invalid.count),
        refused=refused,
    )
    key = report_key(started, options.report_prefix)
    if options.report_dir is not None:
        path = DirStore(options.report_dir).write(key, render(result.to_json()))
    else:
        path = s3.write(key, render(result.to_json()))
    return ReconcileOutcome(result, path)


def _table_of(mapper: Mapper, entity: str) -> str | None:
    found = mapper.spec.table_for(entity)
    return found[0] if found else None
