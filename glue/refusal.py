"""What may stop a repair before it writes anything: the deletes it would make (extras the
stream owns after the cut-off are deferred, not deleted) measured against the delete cap, and
a partial full load (glue.safety holds the pure rules)."""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from glue.diff import decode_key
from glue.files import FileStore, TableFiles, load_counters, recorded_load_files
from glue.guard import Deferred
from glue.safety import LoadFolder, delete_cap, partial_loads
from glue.vocabulary import DriftClass, Kind
from gorse_cdc.dms.s3files import table_prefix
from gorse_cdc.settings import Settings


def planned_counts(
    drift: DataFrame, counts: Mapping[tuple[Kind, DriftClass], int], deferred: Deferred
) -> dict[tuple[Kind, DriftClass], int]:
    """``counts`` with the deferred extra keys taken out (the deletes the repair would make)."""
    planned = dict(counts)
    if not (deferred.users or deferred.items or deferred.pairs):
        return planned
    for (kind, cls), n in counts.items():
        if cls is not DriftClass.EXTRA or n == 0:
            continue
        rows = drift.where((F.col("kind") == kind.value) & (F.col("cls") == cls.value)).select("key")
        planned[(kind, cls)] = sum(
            1 for r in rows.toLocalIterator() if not deferred.covers(kind, decode_key(r["key"]))
        )
    return planned


def refusal(
    settings: Settings,
    store: FileStore,
    tables: list[TableFiles],
    counts: Mapping[tuple[Kind, DriftClass], int],
    actual_rows: Mapping[Kind, int],
) -> str | None:
    """Why the repair must not run (glue.safety), or None."""
    if settings.reconcile.force_deletes:
        return None
    prefix, schema = settings.s3.prefix, settings.source_schema
    recorded = recorded_load_files(store, prefix)
    folders = [
        LoadFolder(
            tf.table,
            store.describe(table_prefix(prefix, schema, tf.table)),
            load_counters(tf),
            recorded.get(f"{schema}.{tf.table}"),
            tf.newest_cdc is not None,
        )
        for tf in tables
    ]
    reasons = [f"repair refused: partial full load, {why}" for why in partial_loads(folders)]
    cap = delete_cap(
        counts, actual_rows, settings.reconcile.max_delete_share, settings.reconcile.delete_cap_min_rows
    )
    if cap:
        reasons.append(cap)
    return "; ".join(reasons) or None
