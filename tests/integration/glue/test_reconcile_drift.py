"""Drift injected straight into the real Gorse is reported exactly and repaired; a second run
reports zero. The DMS output lives in the stack's S3 (moto), written in the DMS format.

Note: the reconcile owns the whole Gorse it points at, so the baseline run also removes what
earlier tests left in the shared stack's Gorse."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import boto3
import orjson
import pytest

from glue.job import ReconcileOptions, run_reconcile
from gorse_cdc.gorse import Feedback, GorseClient, Item
from gorse_cdc.mapping import Mapper, diff_states, expected_state
from gorse_cdc.mapping.state import GorseState
from tests.unit.glue.dmsdata import OTT_TABLES, DmsWriter, s3_put

USERS = [[u, 20 + u, "MF"[u % 2], f"job{u}", f"{u:05d}"] for u in range(1, 7)]
MOVIES = [
    [
        m,
        f"Movie {m}",
        f"19{80 + m}-01-02",
        ["Drama|War", "Comedy", "Action|Comedy", "Horror", "Drama"][m - 10],
    ]
    for m in range(10, 15)
]
RATINGS = [
    [u, m, (u + m) % 5 + 1, datetime(2020, 1, u, m, tzinfo=UTC).replace(tzinfo=None)]
    for u in range(1, 7)
    for m in range(10, 15)
    if (u * m) % 3 != 1
]


WRONG = next(r for r in RATINGS if r[0] == 1 and r[2] >= 4)
BOTH = next(r for r in RATINGS if r[0] == 3 and r[2] >= 4)


def _rows(table: str, rows: list[list]) -> list[dict]:
    names = [c for c, _ in OTT_TABLES[table].columns]
    return [dict(zip(names, (None if v is None else str(v) for v in r), strict=True)) for r in rows]


def _pure_expected(users, movies, ratings) -> GorseState:
    return expected_state(
        Mapper(),
        {
            "users": _rows("users", users),
            "movies": _rows("movies", movies),
            "ratings": _rows("ratings", ratings),
        },
    )


async def _gorse_state(settings) -> GorseState:
    async with GorseClient.from_settings(settings) as c:
        users, items, fbs = await c.export_users(), await c.export_items(), await c.export_feedback()
    return GorseState({u.user_id: u for u in users}, {i.item_id: i for i in items}, {f.key: f for f in fbs})


@pytest.fixture(scope="module")
def dms(stack, settings):
    prefix = f"dms-test-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(
        update={"s3": settings.s3.model_copy(update={"prefix": prefix, "compression": "GZIP"})}
    )
    w = DmsWriter(
        s3_put(boto3.client("s3", **s.aws_client_kwargs("s3")), s.s3.bucket),
        prefix=prefix,
        gzip_=True,
        date_partition=True,
    )
    w.definitions()
    w.load("users", USERS)
    w.load("movies", MOVIES)
    w.load("ratings", RATINGS)
    return s, w


def _run(spark, settings, **kw):
    return run_reconcile(spark, settings, ReconcileOptions(sample=100, progress=False, **kw))


def _forced(settings):
    """The baseline run removes whatever earlier tests left in the shared Gorse: mass deletes,
    knowingly (glue.safety's cap would refuse them)."""
    return settings.model_copy(
        update={"reconcile": settings.reconcile.model_copy(update={"force_deletes": True})}
    )


def test_injected_drift_is_reported_exactly_and_repaired(spark, dms) -> None:
    settings, w = dms
    base = _run(spark, _forced(settings))
    assert base.exit_code in (0, 1) and not base.report["repair"]["failures"]
    assert diff_states(_pure_expected(USERS, MOVIES, RATINGS), asyncio.run(_gorse_state(settings))).total == 0

    # the database erases user 6 (the FK cascade deletes the ratings first); Gorse still has it
    erased = [r for r in RATINGS if r[0] == 6]
    w.cdc("ratings", [("D", [r[0], r[1], None, None]) for r in erased])
    w.cdc("users", [("D", [6, None, None, None, None])])

    async def inject() -> None:
        async with GorseClient.from_settings(settings) as c:
            await c.delete_user("2")  # drops user 2's feedback too
            await c.upsert_items([Item("x1"), Item("x2", {"genres": ["Z"]})])
            await c.upsert_items(
                [
                    Item(
                        "11",
                        {"genres": ["Changed"], "year": 1991},
                        ("Comedy",),
                        datetime(1991, 1, 2, tzinfo=UTC),
                        "Movie 11",
                    )
                ]
            )
            # a wrong type: user 1's like became an unlike in Gorse
            await c.delete_feedback("1", str(WRONG[1]), "like")
            await c.put_feedback(
                [Feedback("unlike", "1", str(WRONG[1]), float(WRONG[2]), WRONG[3].replace(tzinfo=UTC))]
            )
            # one (user, item) holding both like and unlike
            await c.put_feedback(
                [Feedback("unlike", "3", str(BOTH[1]), 1.0, datetime(2019, 1, 1, tzinfo=UTC))]
            )

    asyncio.run(inject())
    current_ratings = [r for r in RATINGS if r[0] != 6]
    expected = _pure_expected([u for u in USERS if u[0] != 6], MOVIES, current_ratings)
    fb_type = {(str(r[0]), str(r[1])): ("like" if r[2] >= 4 else "unlike") for r in RATINGS}

    out = _run(spark, settings)
    d = out.report["drift"]
    assert (d["users"]["sample_missing"], d["users"]["sample_extra"], d["users"]["changed"]) == (
        [["2"]],
        [["6"]],
        0,
    )
    assert (d["items"]["sample_extra"], d["items"]["missing"]) == ([["x1"], ["x2"]], 0)
    assert [c["key"] for c in d["items"]["sample_changed"]] == [["11"]]
    assert d["items"]["sample_changed"][0]["fields"]["Labels"][1] == {"genres": ["Changed"], "year": 1991.0}
    missing_fb = sorted(
        [["like", "1", str(WRONG[1])]]
        + [[fb_type[(str(r[0]), str(r[1]))], "2", str(r[1])] for r in RATINGS if r[0] == 2]
    )
    extra_fb = sorted(
        [["unlike", "1", str(WRONG[1])], ["unlike", "3", str(BOTH[1])]]
        + [[fb_type[(str(r[0]), str(r[1]))], "6", str(r[1])] for r in erased]
    )
    assert sorted(d["feedback"]["sample_missing"]) == missing_fb
    assert sorted(d["feedback"]["sample_extra"]) == extra_fb
    assert d["feedback"]["changed"] == 0
    assert d["total"] == 1 + 1 + 2 + 1 + len(missing_fb) + len(extra_fb)
    assert out.exit_code == 1 and not out.report["repair"]["failures"]
    assert out.report_path.startswith(f"s3://{settings.s3.bucket}/reports/")
    body = (
        boto3.client("s3", **settings.aws_client_kwargs("s3"))
        .get_object(Bucket=settings.s3.bucket, Key=out.report_path.split("/", 3)[3])["Body"]
        .read()
    )
    assert orjson.loads(body)["drift"]["total"] == d["total"]

    assert diff_states(expected, asyncio.run(_gorse_state(settings))).total == 0
    again = _run(spark, settings)
    assert again.report["drift"]["total"] == 0 and again.exit_code == 0


def test_dry_run_writes_nothing_and_newer_stream_changes_are_left_alone(spark, dms) -> None:
    settings, _ = dms

    async def stream_writes() -> None:
        async with GorseClient.from_settings(settings) as c:
            # a rating the consumer applied after the job's cut-off (timestamp newer than any file)
            await c.put_feedback([Feedback("like", "4", "13", 5.0, datetime.now(UTC))])
            await c.upsert_items([Item("x9")])  # plain drift

    asyncio.run(stream_writes())
    dry = _run(spark, settings, dry_run=True)
    assert dry.exit_code == 1 and dry.report["drift"]["items"]["sample_extra"] == [["x9"]]
    assert asyncio.run(_gorse_state(settings)).items.get("x9") is not None

    out = _run(spark, settings)
    assert out.report["repair"]["deferred_to_stream"] == {"feedback.extra": 1}
    assert out.report["repair"]["applied"] == {"items.extra": 1}
    state = asyncio.run(_gorse_state(settings))
    assert ("like", "4", "13") in state.feedback and "x9" not in state.items
