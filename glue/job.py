"""The reconcile, phase by phase (the one place that wires the pure Spark core to I/O).

read S3 -> compute (latest rows, expected state) -> export Gorse -> diff -> repair -> report.
Exit codes for schedulers: 0 no drift, 1 drift repaired (or found with --dry-run, or source
rows that cannot be mapped), 2 failure (raised as FatalError, or writes that Gorse refused).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from glue.actual import KINDS, actual_frame, stage_export
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
from glue.guard import Deferred, touched_by
from glue.repair import PHASES, Repairer
from glue.report import drift_section, render, report_key
from glue.writes import GorseWriter
from gorse_cdc.gorse import GorseClient
from gorse_cdc.mapping import Mapper, load_spec
from gorse_cdc.retry import RateLimiter
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)
PERSIST = StorageLevel.MEMORY_AND_DISK


@dataclass
class ReconcileOptions:
    source_dir: Path | None = None  # read DMS output from this folder instead of the bucket
    dry_run: bool = False
    max_writes_per_s: float | None = None
    source_check: bool = False  # re-read drifted keys from the source DB around each write
    report_dir: Path | None = None  # write the report here instead of s3://bucket/reports/
    staging_dir: Path | None = None  # where the Gorse export is staged (default: temp / S3)
    sample: int = 10
    progress: bool = True
    report_prefix: str = "reports"  # in the bucket (or under report_dir)


@dataclass
class ReconcileOutcome:
    report: dict[str, Any]
    report_path: str
    exit_code: int
    phases_s: dict[str, float] = field(default_factory=dict)


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


async def _export(settings: Settings, staging: Any, prefix: str) -> dict[str, Any]:
    async with GorseClient.from_settings(settings) as client:
        return {kind: await stage_export(client, kind, staging, prefix) for kind in KINDS}


def _deferred(
    store: FileStore,
    settings: Settings,
    mapper: Mapper,
    tables: list[TableFiles],
    exp: ExpectedState,
    actual_feedback: DataFrame,
    cutoff: datetime | None,
    use_timestamps: bool,
) -> Deferred:
    d = Deferred()
    prefix, schema = settings.s3.prefix, settings.source.schema_name
    for tf in tables:
        names = tf.definition.column_names
        for name in newer_files(store, prefix, schema, tf):
            rows = file_rows(store.read(name.key), name, tf.definition, bool(settings.s3.timestamp_column))
            touched_by(mapper, tf.table, ((op, dict(zip(names, v, strict=True))) for op, v in rows), d)
    if use_timestamps and cutoff is not None:
        newer = actual_feedback.where(F.col("ts") > cutoff.timestamp()).select("key").collect()
        for r in newer:
            _, user, item = decode_key(r["key"])
            d.pairs.add((user, item))
            d.users.add(user)
    if d.items:
        liked = exp.feedback.where(
            (F.col("ftype") == F.lit(mapper.liked_feedback_type)) & F.col("item_id").isin(sorted(d.items))
        )
        d.users.update(r["user_id"] for r in liked.select("user_id").distinct().collect())
    return d


async def _repair(
    settings: Settings,
    options: ReconcileOptions,
    drift: DataFrame,
    counts: dict[tuple[str, str], int],
    d: Deferred,
) -> Repairer:
    async with GorseClient.from_settings(settings) as client:
        writer = None if options.dry_run else GorseWriter(client, settings.consumer.gorse_concurrency)
        check = None
        if options.source_check:
            from glue.source_check import SourceDbCheck

            check = SourceDbCheck(settings.source_dsn, _mapper(settings), settings.source.schema_name)
        rep = Repairer(
            writer,
            RateLimiter(options.max_writes_per_s),
            d,
            check=check,
            chunk_size=settings.gorse.batch_size,
            progress=options.progress,
        )
        try:
            for phase in PHASES:
                kind, classes, _ = phase
                total = sum(counts.get((kind, c), 0) for c in classes)
                if total:
                    rows = drift.where((F.col("kind") == kind) & F.col("cls").isin(list(classes)))
                    await rep.run_phase(phase, rows.toLocalIterator(), total)
        finally:
            if check is not None:
                check.close()
        return rep


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
    s3 = S3Store(settings.s3.bucket, settings.aws_client_kwargs("s3"))
    store: FileStore = DirStore(options.source_dir) if options.source_dir else s3
    report: dict[str, Any] = {"run_id": run_id, "started_at": started.isoformat(), "dry_run": options.dry_run}
    with timer("read_s3"):
        tables = [
            discover(store, settings.s3.prefix, settings.source.schema_name, t) for t in mapper.spec.tables
        ]
        cutoff = cutoff_of(tables)
        current = _read_current(spark, store, settings, mapper, tables)
        report["source"] = store.describe(settings.s3.prefix)
        report["cutoff"] = cutoff.isoformat() if cutoff else None
        report["files_read"] = {tf.table: len(tf.files) for tf in tables}
        report["source_rows"] = {t: df.count() for t, df in current.items()}
    with timer("compute"):
        exp = expected_state(mapper, current)
        expected = {k: df.persist(PERSIST) for k, df in exp.kinds().items()}
        exp.feedback.persist(PERSIST)
        report["expected"] = {k: df.where(F.col("error").isNull()).count() for k, df in expected.items()}
        bad = [df.where(F.col("error").isNotNull()) for df in expected.values()]
        invalid = sum(b.count() for b in bad)
        report["invalid_source_rows"] = {
            "count": invalid,
            "sample": [
                {"key": r["key"], "error": r["error"]} for b in bad for r in b.limit(options.sample).collect()
            ][: options.sample],
        }
    staging, staging_prefix = _staging(spark, settings, options, run_id)
    try:
        with timer("export_gorse"):
            exports = asyncio.run(_export(settings, staging, staging_prefix))
            actual = {k: actual_frame(spark, staging, e).persist(PERSIST) for k, e in exports.items()}
            report["actual"] = {k: e.rows for k, e in exports.items()}
            report["actual_export"] = {k: e.source for k, e in exports.items()}
        with timer("diff"):
            drift = diff_kind("users", expected["users"], actual["users"])
            for kind in ("items", "feedback"):
                drift = drift.unionByName(diff_kind(kind, expected[kind], actual[kind]))
            drift = drift.persist(PERSIST)
            kind_tables = {
                "users": _table_of(mapper, "user"),
                "items": _table_of(mapper, "item"),
                "feedback": _table_of(mapper, "feedback"),
            }
            report["drift"] = drift_section(drift, kind_tables, options.sample)
            counts = {
                (r["kind"], r["cls"]): int(r["count"]) for r in drift.groupBy("kind", "cls").count().collect()
            }
        with timer("repair"):
            deferred = _deferred(
                store, settings, mapper, tables, exp, actual["feedback"], cutoff, not options.source_check
            )
            rep = asyncio.run(_repair(settings, options, drift, counts, deferred))
            report["repair"] = rep.result.summary()
            report["repair"]["deferred_keys"] = deferred.counts()
    finally:
        if isinstance(staging, DirStore) and options.staging_dir is None:
            shutil.rmtree(staging.root, ignore_errors=True)
    report["phases_s"] = timer.seconds
    report["finished_at"] = datetime.now(UTC).isoformat()
    to_fix = report["drift"]["total"] - sum(rep.result.deferred.values())
    code = 2 if rep.result.failures else 1 if (to_fix > 0 or invalid > 0) else 0
    report["exit_code"] = code
    key = report_key(started, options.report_prefix)
    if options.report_dir is not None:
        path = DirStore(options.report_dir).write(key, render(report))
    else:
        path = s3.write(key, render(report))
    report["report_path"] = path
    return ReconcileOutcome(report, path, code, timer.seconds)


def _table_of(mapper: Mapper, entity: str) -> str | None:
    found = mapper.spec.table_for(entity)
    return found[0] if found else None
