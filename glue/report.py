"""The drift report: counts per kind and table, sample keys, repair outcome, phase timings.

Typed as frozen dataclasses; ``to_json`` gives the JSON document that is written to the
bucket's reports/ prefix (or a local folder) and printed. That document's shape is a contract
(the demo, the tests, whoever reads the bucket): keys and values are plain JSON, enum members
become their values, and nothing is renamed (keys are only added: "refused" when the repair
was refused, glue.safety)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from glue.actual import ExportSource
from glue.diff import changed_fields, decode_key
from glue.repair import RepairReport
from glue.vocabulary import DriftClass, ExitCode, Key, Kind

REPORT_PREFIX = "reports"


class ReportStore(Protocol):
    def write(self, key: str, data: bytes, content_type: str = ...) -> str: ...


@dataclass(frozen=True)
class ChangedKey:
    key: Key
    fields: Mapping[str, list[Any]]  # field -> [expected, actual], the fields that differ

    def to_json(self) -> dict[str, Any]:
        return {"key": list(self.key), "fields": dict(self.fields)}


@dataclass(frozen=True)
class KindDrift:
    """One kind's drift: counts per class and the first keys of each (in key order)."""

    table: str | None  # the source table mapped to this kind
    missing: int = 0
    extra: int = 0
    changed: int = 0
    sample_missing: tuple[Key, ...] = ()
    sample_extra: tuple[Key, ...] = ()
    sample_changed: tuple[ChangedKey, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            DriftClass.MISSING.value: self.missing,
            DriftClass.EXTRA.value: self.extra,
            DriftClass.CHANGED.value: self.changed,
            "sample_missing": [list(k) for k in self.sample_missing],
            "sample_extra": [list(k) for k in self.sample_extra],
            "sample_changed": [c.to_json() for c in self.sample_changed],
        }


@dataclass(frozen=True)
class DriftReport:
    total: int  # drifted keys of every kind and class (deferred ones included)
    kinds: Mapping[Kind, KindDrift]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.total}
        out.update({kind.value: d.to_json() for kind, d in self.kinds.items()})
        return out


@dataclass(frozen=True)
class InvalidRow:
    key: str  # the raw key, as a JSON list
    error: str


@dataclass(frozen=True)
class InvalidRows:
    """Source rows the mapping rejects (their keys are left alone)."""

    count: int = 0
    sample: tuple[InvalidRow, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sample": [{"key": r.key, "error": r.error} for r in self.sample]}


@dataclass(frozen=True)
class ReconcileReport:
    """One run's report. The written document has no ``report_path`` (it is added to the
    printed one, see glue.job.ReconcileOutcome.report)."""

    run_id: str
    started_at: datetime
    dry_run: bool
    source: str  # where the DMS output was read
    cutoff: datetime | None  # the newest change the snapshot holds
    files_read: Mapping[str, int]  # per source table
    source_rows: Mapping[str, int]  # current rows per source table
    expected: Mapping[Kind, int]
    invalid_source_rows: InvalidRows
    actual: Mapping[Kind, int]
    actual_export: Mapping[Kind, ExportSource]
    drift: DriftReport
    repair: RepairReport
    phases_s: Mapping[str, float]
    finished_at: datetime
    exit_code: ExitCode
    refused: str | None = None  # why the repair was refused (nothing written); key only when set

    def to_json(self) -> dict[str, Any]:
        doc = {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "dry_run": self.dry_run,
            "source": self.source,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "files_read": dict(self.files_read),
            "source_rows": dict(self.source_rows),
            "expected": {k.value: n for k, n in self.expected.items()},
            "invalid_source_rows": self.invalid_source_rows.to_json(),
            "actual": {k.value: n for k, n in self.actual.items()},
            "actual_export": {k.value: s.value for k, s in self.actual_export.items()},
            "drift": self.drift.to_json(),
            "repair": self.repair.to_json(),
            "phases_s": dict(self.phases_s),
            "finished_at": self.finished_at.isoformat(),
            "exit_code": int(self.exit_code),
        }
        if self.refused is not None:
            doc["refused"] = self.refused
        return doc


def drift_section(drift: DataFrame, kind_tables: Mapping[Kind, str | None], sample: int) -> DriftReport:
    counts = {
        (Kind(r["kind"]), DriftClass(r["cls"])): int(r["count"])
        for r in drift.groupBy("kind", "cls").count().collect()
    }

    def rows(kind: Kind, cls: DriftClass) -> list[Any]:
        if not counts.get((kind, cls), 0):
            return []
        where = (F.col("kind") == kind.value) & (F.col("cls") == cls.value)
        return drift.where(where).orderBy("key").limit(sample).collect()

    def of(kind: Kind, table: str | None) -> KindDrift:
        return KindDrift(
            table,
            missing=counts.get((kind, DriftClass.MISSING), 0),
            extra=counts.get((kind, DriftClass.EXTRA), 0),
            changed=counts.get((kind, DriftClass.CHANGED), 0),
            sample_missing=tuple(tuple(decode_key(r["key"])) for r in rows(kind, DriftClass.MISSING)),
            sample_extra=tuple(tuple(decode_key(r["key"])) for r in rows(kind, DriftClass.EXTRA)),
            sample_changed=tuple(
                ChangedKey(tuple(decode_key(r["key"])), changed_fields(r["exp_canon"], r["act_canon"]))
                for r in rows(kind, DriftClass.CHANGED)
            ),
        )

    return DriftReport(sum(counts.values()), {kind: of(kind, table) for kind, table in kind_tables.items()})


def report_key(started: datetime, prefix: str = REPORT_PREFIX) -> str:
    return f"{prefix}/reconcile-{started.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"


def render(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
