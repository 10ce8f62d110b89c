"""The drift report: counts per kind and table, sample keys, repair outcome, phase timings.
Written as JSON to the bucket's reports/ prefix (or a local folder) and printed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from glue.diff import CLASSES, changed_fields, decode_key

REPORT_PREFIX = "reports"


class ReportStore(Protocol):
    def write(self, key: str, data: bytes, content_type: str = ...) -> str: ...


def drift_section(drift: DataFrame, kind_tables: dict[str, str | None], sample: int) -> dict[str, Any]:
    counts = {(r["kind"], r["cls"]): int(r["count"]) for r in drift.groupBy("kind", "cls").count().collect()}
    out: dict[str, Any] = {"total": sum(counts.values())}
    for kind, table in kind_tables.items():
        section: dict[str, Any] = {"table": table}
        for cls in CLASSES:
            section[cls] = counts.get((kind, cls), 0)
        for cls in CLASSES:
            rows = (
                drift.where((F.col("kind") == kind) & (F.col("cls") == cls))
                .orderBy("key")
                .limit(sample)
                .collect()
                if section[cls]
                else []
            )
            if cls == "changed":
                section["sample_changed"] = [
                    {"key": decode_key(r["key"]), "fields": changed_fields(r["exp_canon"], r["act_canon"])}
                    for r in rows
                ]
            else:
                section[f"sample_{cls}"] = [decode_key(r["key"]) for r in rows]
        out[kind] = section
    return out


def report_key(started: datetime, prefix: str = REPORT_PREFIX) -> str:
    return f"{prefix}/reconcile-{started.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"


def render(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
