"""The reconcile's vocabulary types and the typed report: the enums keep today's strings and
numbers, and the report's JSON keeps the exact shape the old dicts had (the literal dicts below
are that shape, written out by hand)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pyspark.sql import Row

from glue.actual import KINDS, ExportSource
from glue.diff import diff_kind
from glue.expected import KIND_SCHEMA, canon, key_json
from glue.guard import Deferred
from glue.job import ReconcileOutcome
from glue.repair import (
    PHASES,
    DeferReason,
    RepairAction,
    Repairer,
    RepairReport,
)
from glue.report import (
    ChangedKey,
    DriftReport,
    InvalidRow,
    InvalidRows,
    KindDrift,
    ReconcileReport,
    drift_section,
    render,
)
from glue.vocabulary import DriftClass, ExitCode, Kind
from gorse_cdc.errors import GorsePermanentError
from gorse_cdc.gorse import Item, User
from gorse_cdc.retry import RateLimiter


def _plain(value: Any) -> None:
    """Only builtin JSON types (no enum members, no tuples) anywhere in the document."""
    assert not isinstance(value, Enum), value
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str, k
            _plain(v)
    elif isinstance(value, list):
        for v in value:
            _plain(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), value


def test_enums_keep_the_old_strings_and_numbers() -> None:
    assert [k.value for k in Kind] == ["users", "items", "feedback"] == list(KINDS)
    assert [c.value for c in DriftClass] == ["missing", "extra", "changed"]
    assert [a.value for a in RepairAction] == ["upsert", "delete"]
    assert [s.value for s in ExportSource] == ["bulk", "paginated"]
    assert [r.value for r in DeferReason] == ["changed after the cut-off", "source differs from the snapshot"]
    assert (ExitCode.NO_DRIFT, ExitCode.DRIFT, ExitCode.FAILURE) == (0, 1, 2)
    assert Kind.FEEDBACK == "feedback" and f"{Kind.ITEMS}.{DriftClass.EXTRA}" == "items.extra"


def test_exit_code_rule() -> None:
    assert ExitCode.of(failures=0, to_fix=0, invalid=0) is ExitCode.NO_DRIFT
    assert ExitCode.of(failures=0, to_fix=3, invalid=0) is ExitCode.DRIFT
    assert ExitCode.of(failures=0, to_fix=0, invalid=1) is ExitCode.DRIFT
    assert ExitCode.of(failures=1, to_fix=3, invalid=1) is ExitCode.FAILURE


def test_phases_are_the_old_order() -> None:
    assert [(p.kind, p.classes, p.action) for p in PHASES] == [
        ("items", ("missing", "changed"), "upsert"),
        ("users", ("missing", "changed"), "upsert"),
        ("feedback", ("missing", "changed"), "upsert"),
        ("feedback", ("extra",), "delete"),
        ("users", ("extra",), "delete"),
        ("items", ("extra",), "delete"),
    ]


def test_drift_section_has_the_old_shape(spark) -> None:
    a, b = User("1", {"age": 3}), User("1", {"age": 4})
    exp_users = spark.createDataFrame(
        [(key_json("1"), canon(a), "{}", None), (key_json("2"), canon(User("2")), "{}", None)], KIND_SCHEMA
    )
    act_schema = "key string, canon string, ts double"
    act_users = spark.createDataFrame(
        [(key_json("1"), canon(b), None), (key_json("3"), canon(User("3")), None)], act_schema
    )
    no_rows = spark.createDataFrame([], KIND_SCHEMA)
    act_items = spark.createDataFrame([(key_json("x1"), canon(Item("x1")), None)], act_schema)
    drift = diff_kind(Kind.USERS, exp_users, act_users).unionByName(diff_kind(Kind.ITEMS, no_rows, act_items))
    report = drift_section(drift, {Kind.USERS: "users", Kind.ITEMS: "movies", Kind.FEEDBACK: None}, 10)
    doc = report.to_json()
    _plain(doc)
    assert doc == {
        "total": 4,
        "users": {
            "table": "users",
            "missing": 1,
            "extra": 1,
            "changed": 1,
            "sample_missing": [["2"]],
            "sample_extra": [["3"]],
            "sample_changed": [{"key": ["1"], "fields": {"Labels": [{"age": 3.0}, {"age": 4.0}]}}],
        },
        "items": {
            "table": "movies",
            "missing": 0,
            "extra": 1,
            "changed": 0,
            "sample_missing": [],
            "sample_extra": [["x1"]],
            "sample_changed": [],
        },
        "feedback": {
            "table": None,
            "missing": 0,
            "extra": 0,
            "changed": 0,
            "sample_missing": [],
            "sample_extra": [],
            "sample_changed": [],
        },
    }


class _RefusingWriter:
    async def delete(self, kind: str, keys: list[list[str]]) -> None:
        raise GorsePermanentError("DELETE", f"/api/{kind}", 400, "refused")


def _rows(*rows: tuple[str, str, list[str], str | None]) -> list[Row]:
    drift_row = Row("kind", "cls", "key", "entity")  # as glue.job hands them over (key as JSON)
    return [drift_row(k, c, json.dumps(key), e) for k, c, key, e in rows]


def test_repair_report_has_the_old_shape() -> None:
    deferred = Deferred(users={"4"}, pairs={("4", "13")})
    dry = Repairer(None, RateLimiter(None), deferred, progress=False)
    fb_phase = next(p for p in PHASES if p.kind == Kind.FEEDBACK and p.action == RepairAction.DELETE)
    items_phase = next(p for p in PHASES if p.kind == Kind.ITEMS and p.action == RepairAction.DELETE)
    asyncio.run(dry.run_phase(fb_phase, _rows(("feedback", "extra", ["like", "4", "13"], None)), 1))
    asyncio.run(dry.run_phase(items_phase, _rows(("items", "extra", ["x9"], None)), 1))
    doc = dry.result.report(deferred.counts()).to_json()
    _plain(doc)
    assert doc == {
        "applied": {"items.extra": 1},
        "deferred_to_stream": {"feedback.extra": 1},
        "rewritten_after_source_moved": 0,
        "sample_deferred": [
            {"kind": "feedback", "key": ["like", "4", "13"], "reason": "changed after the cut-off"}
        ],
        "failures": [],
        "deferred_keys": {"users": 1, "items": 0, "feedback_pairs": 1},
    }

    refused = Repairer(_RefusingWriter(), RateLimiter(None), Deferred(), progress=False)  # type: ignore[arg-type]
    asyncio.run(refused.run_phase(items_phase, _rows(("items", "extra", ["x9"], None)), 1))
    doc = refused.result.report(Deferred().counts()).to_json()
    _plain(doc)
    assert doc["applied"] == {} and doc["failures"] == [
        {"kind": "items", "keys": [["x9"]], "error": "DELETE /api/items -> 400: refused"}
    ]


def _report() -> ReconcileReport:
    repair = RepairReport(
        applied={(Kind.ITEMS, DriftClass.EXTRA): 1},
        deferred_to_stream={},
        rewritten_after_source_moved=0,
        sample_deferred=(),
        failures=(),
        deferred_keys={"users": 0, "items": 0, "feedback_pairs": 0},
    )
    drift = DriftReport(
        2,
        {
            Kind.USERS: KindDrift("users", changed=1, sample_changed=(ChangedKey(("1",), {"Age": [3, 4]}),)),
            Kind.ITEMS: KindDrift("movies", extra=1, sample_extra=(("x1",),)),
            Kind.FEEDBACK: KindDrift("ratings"),
        },
    )
    return ReconcileReport(
        run_id="20260101T000000Z-abcdef",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        dry_run=False,
        source="s3://b/dms",
        cutoff=None,
        files_read={"users": 2, "movies": 1, "ratings": 0},
        source_rows={"users": 5, "movies": 3, "ratings": 0},
        expected={Kind.USERS: 5, Kind.ITEMS: 3, Kind.FEEDBACK: 0},
        invalid_source_rows=InvalidRows(1, (InvalidRow('["7"]', "users: bad age"),)),
        actual={Kind.USERS: 5, Kind.ITEMS: 4, Kind.FEEDBACK: 0},
        actual_export={
            Kind.USERS: ExportSource.BULK,
            Kind.ITEMS: ExportSource.BULK,
            Kind.FEEDBACK: ExportSource.PAGINATED,
        },
        drift=drift,
        repair=repair,
        phases_s={"read_s3": 1.5, "compute": 0.25},
        finished_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        exit_code=ExitCode.DRIFT,
    )


OLD_SHAPE: dict[str, Any] = {
    "run_id": "20260101T000000Z-abcdef",
    "started_at": "2026-01-01T00:00:00+00:00",
    "dry_run": False,
    "source": "s3://b/dms",
    "cutoff": None,
    "files_read": {"users": 2, "movies": 1, "ratings": 0},
    "source_rows": {"users": 5, "movies": 3, "ratings": 0},
    "expected": {"users": 5, "items": 3, "feedback": 0},
    "invalid_source_rows": {"count": 1, "sample": [{"key": '["7"]', "error": "users: bad age"}]},
    "actual": {"users": 5, "items": 4, "feedback": 0},
    "actual_export": {"users": "bulk", "items": "bulk", "feedback": "paginated"},
    "drift": {
        "total": 2,
        "users": {
            "table": "users",
            "missing": 0,
            "extra": 0,
            "changed": 1,
            "sample_missing": [],
            "sample_extra": [],
            "sample_changed": [{"key": ["1"], "fields": {"Age": [3, 4]}}],
        },
        "items": {
            "table": "movies",
            "missing": 0,
            "extra": 1,
            "changed": 0,
            "sample_missing": [],
            "sample_extra": [["x1"]],
            "sample_changed": [],
        },
        "feedback": {
            "table": "ratings",
            "missing": 0,
            "extra": 0,
            "changed": 0,
            "sample_missing": [],
            "sample_extra": [],
            "sample_changed": [],
        },
    },
    "repair": {
        "applied": {"items.extra": 1},
        "deferred_to_stream": {},
        "rewritten_after_source_moved": 0,
        "sample_deferred": [],
        "failures": [],
        "deferred_keys": {"users": 0, "items": 0, "feedback_pairs": 0},
    },
    "phases_s": {"read_s3": 1.5, "compute": 0.25},
    "finished_at": "2026-01-01T00:01:00+00:00",
    "exit_code": 1,
}


def test_reconcile_report_round_trips_to_the_old_json() -> None:
    report = _report()
    doc = report.to_json()
    _plain(doc)
    assert doc == OLD_SHAPE and "report_path" not in doc  # the written file has no path
    assert json.loads(render(doc)) == OLD_SHAPE
    cut = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert replace(report, cutoff=cut).to_json()["cutoff"] == cut.isoformat()


def test_outcome_prints_the_report_with_its_path() -> None:
    out = ReconcileOutcome(_report(), "s3://b/reports/reconcile-20260101T000000Z.json")
    assert out.report == {**OLD_SHAPE, "report_path": "s3://b/reports/reconcile-20260101T000000Z.json"}
    assert out.report is out.report  # one document, as the old dict was
    assert out.exit_code == 1 and out.exit_code is ExitCode.DRIFT
    assert out.phases_s == {"read_s3": 1.5, "compute": 0.25}
    assert json.loads(render(out.report))["drift"]["items"]["sample_extra"] == [["x1"]]
