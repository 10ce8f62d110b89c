"""`gorse-cdc reconcile`: the nightly reconcile, run locally on Spark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gorse_cdc.settings import Settings

DESCRIPTION = """\
Prove that Gorse equals mapping(source database), and repair it where it does not.

Reads the DMS S3 output of every mapped table (LOAD files, then every CDC file, in commit
order; CSV or Parquet, gzip, date-partitioned folders), takes the last change per primary
key, maps the current rows through the shared mapping (users' liked labels included),
exports Gorse (bulk JSONL), diffs the two in Spark and repairs the difference with idempotent
writes (upsert users/items, PUT feedback, deletes). Writes a JSON drift report to
s3://<bucket>/reports/ (or --report-dir) and prints it.

It never fights the live stream: keys touched by CDC files that landed after the job's
cut-off (listed again before every repair chunk, at most every reconcile.relist_interval_s),
and (without the source check) feedback newer than the cut-off, are left to the consumer.
With the source check every drifted key is re-read from the source database before and
after its write, so a key erased from the source is never written back.
Source check default: ON when repairing and a source DSN is available (the local stack's
PostgreSQL when local = true, or GORSE_CDC_SOURCE__DSN); OFF with --dry-run or without a DSN.
--source-check / --no-source-check (or GORSE_CDC_RECONCILE__SOURCE_CHECK) decide explicitly;
without it, run only when ingest is quiet.

Safety: the repair is refused (exit 2, nothing written, "refused" in the report) when a
table's LOAD files look partial (a gap in LOAD00000001.csv, LOAD00000002.csv ..., or fewer
than the full load recorded), or when the deletes it plans for a kind exceed
--max-delete-share of Gorse's rows of that kind (default 5 %, never below
reconcile.delete_cap_min_rows rows). --force-deletes overrides both knowingly.

Exit codes: 0 no drift, 1 drift repaired (or found, with --dry-run), 2 failure.
Settings (bucket, prefix, Gorse URL and key, source DSN) come from GORSE_CDC_* variables.
"""


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def fold_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """The CLI flags folded into the one Settings object (reconcile section)."""
    update: dict[str, object] = {}
    if args.source_check is not None:
        update["source_check"] = args.source_check
    if args.max_delete_share is not None:
        update["max_delete_share"] = args.max_delete_share
    if args.force_deletes:
        update["force_deletes"] = True
    if not update:
        return settings
    return settings.model_copy(update={"reconcile": settings.reconcile.model_copy(update=update)})


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reconcile",
        help="nightly reconcile: diff Gorse against the DMS S3 snapshot and repair (PySpark)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: gorse-cdc reconcile --dry-run  (then without --dry-run to repair)",
    )
    p.add_argument("--dry-run", action="store_true", help="report the drift, write nothing to Gorse")
    p.add_argument(
        "--source-dir",
        type=Path,
        help="read the DMS output from this folder (laid out like the bucket) instead of S3",
    )
    p.add_argument(
        "--max-writes-per-s", type=float, default=None, help="cap repair writes per second (default: no cap)"
    )
    p.add_argument(
        "--source-check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="re-read each drifted key from the source DB (settings.source) around its write "
        "(default: on when repairing and a source DSN is available, off with --dry-run)",
    )
    p.add_argument(
        "--max-delete-share",
        type=_share,
        default=None,
        help="refuse the repair when planned deletes of a kind exceed this share of Gorse's rows "
        "of that kind, 0 < share <= 1 (default: reconcile.max_delete_share, 0.05; 1 = no cap)",
    )
    p.add_argument(
        "--force-deletes",
        action="store_true",
        help="repair even when the delete cap or a partial LOAD folder would refuse it",
    )
    p.add_argument(
        "--report-dir", type=Path, help="write the JSON report here instead of s3://<bucket>/reports/"
    )
    p.add_argument("--staging-dir", type=Path, help="where to stage the Gorse export (default: a temp dir)")
    p.add_argument("--sample", type=int, default=10, help="sample keys per kind and class in the report")
    p.add_argument("--spark-master", default="local[2]", help="Spark master (default local[2])")
    p.add_argument(
        "--shuffle-partitions", type=int, default=4, help="spark.sql.shuffle.partitions (default 4)"
    )
    p.add_argument("--driver-memory", default="2g", help="spark.driver.memory (default 2g)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from glue.job import ReconcileOptions
    from glue.main import reconcile_and_print
    from glue.spark import local_session

    options = ReconcileOptions(
        source_dir=args.source_dir,
        dry_run=args.dry_run,
        max_writes_per_s=args.max_writes_per_s,
        source_check=None,  # settings.reconcile.source_check (the flag folded in), else the default
        report_dir=args.report_dir,
        staging_dir=args.staging_dir,
        sample=args.sample,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    settings = fold_settings(args, settings)
    spark = local_session(args.spark_master, args.shuffle_partitions, args.driver_memory)
    try:
        return reconcile_and_print(spark, settings, options)
    finally:
        spark.stop()
