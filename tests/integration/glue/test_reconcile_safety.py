"""The reconcile is safe by default while ingest runs, and refuses a repair it cannot trust.

(a) A repair that runs while users are erased from the source (and the activity generator
    writes) never re-creates an erased user: the run uses the default source check (on when
    repairing with a source DSN), the deferral is refreshed before each repair chunk, and once
    the stream drains `gorse-cdc verify` reports Gorse equal to the database.
(b) A LOAD file deleted from a table's folder (a partial full load) makes the repair refuse:
    exit code FAILURE, "refused" naming the table and the folder, nothing written.
(c) Planned deletes past the cap are refused the same way; forcing them deletes.

Real processes in (a) as in test_reconcile_live.py; (b) and (c) write DMS output to the
stack's S3 (moto) under a private prefix, as test_reconcile_drift.py does."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import threading
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest

from glue.job import ReconcileOptions, run_reconcile
from glue.vocabulary import ExitCode
from gorse_cdc.gorse import GorseClient, Item, User
from producers.activity import run_activity
from producers.dms.slot import drop_slot
from tests.integration.glue.conftest import private_pipeline
from tests.integration.glue.test_reconcile_live import CLI, QUIET, _start, _stop, _until_verified
from tests.unit.glue.dmsdata import DmsWriter, s3_put

MISSING = [
    m for m in ("producers.dms", "consumers.cli", "consumers.verify") if importlib.util.find_spec(m) is None
]
slow = pytest.mark.slow


def _user_ids(s) -> set[str]:
    with psycopg.connect(s.source_dsn, autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT user_id FROM users")}


def _reconcile_settings(s, **update):
    return s.model_copy(update={"reconcile": s.reconcile.model_copy(update=update)})


# ---- (a) erasures during the repair ------------------------------------------------------------
@slow
@pytest.mark.skipif(bool(MISSING), reason=f"needs the local DMS and the consumer: {MISSING} absent")
def test_users_erased_during_the_repair_are_never_recreated(stack, settings, spark, tmp_path: Path) -> None:
    env, s = private_pipeline(
        settings,
        "safe",
        # small chunks, a re-listing before each: erasures land between chunks
        gorse=settings.gorse.model_copy(update={"batch_size": 2}),
        reconcile=settings.reconcile.model_copy(update={"relist_interval_s": 0.0}),
    )
    small = ["--users", "60", "--movies", "20", "--ratings", "600", "--seed", "11", "--truncate"]
    gen = subprocess.run([*CLI, "data", "generate", *small], env=env, capture_output=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    procs = []
    try:
        procs.append(_start(["dms", "run", "--mode", "full-load-and-cdc"], env, tmp_path / "dms.log"))
        procs.append(_start(["consume", "--metrics-port", "0"], env, tmp_path / "consume.log"))
        forced = _reconcile_settings(s, force_deletes=True)  # wipe what other tests left in Gorse
        pre = _until_verified(env, seconds=60, reconcile=lambda: run_reconcile(spark, forced, QUIET))
        assert pre.returncode == 0, pre.stdout[-3000:]

        users_before = _user_ids(s)

        async def drift() -> None:  # every user needs a repair write (an upsert)
            async with GorseClient.from_settings(s) as c:
                await c.upsert_users([User(u, {"age": 999}) for u in sorted(users_before)])

        asyncio.run(drift())
        # activity with erasures (GDPR: the user and, by the FK cascade, their ratings), in this
        # process so that the erasure weight can be raised; it runs through the whole reconcile
        done: dict[str, object] = {}

        def activity() -> None:
            try:
                done["summary"] = run_activity(
                    s, duration_s=25, rate=5, seed=3, weights={"gdpr_erase": 40.0, "delete_movie": 0.0}
                )
            except Exception as e:  # reported below
                done["error"] = e

        t = threading.Thread(target=activity, daemon=True)
        t.start()
        # source_check None: the default (on: repairing, with the stack's DSN); 8 writes/s
        # spreads the ~60 upserts over several seconds of 2-row chunks
        out = run_reconcile(
            spark, s, ReconcileOptions(source_check=None, max_writes_per_s=8, progress=False, sample=30)
        )
        t.join(60)
        assert "error" not in done and "summary" in done, done
        assert "refused" not in out.report and out.exit_code in (ExitCode.NO_DRIFT, ExitCode.DRIFT), (
            out.report
        )
        assert not out.report["repair"]["failures"]
        # keys the stream touched during the repair were left to it; the drift injected into
        # users whose liked labels a movie edit could move is repaired by the next, quiet run
        # (the nightly's next night), never by overwriting the stream's newer state
        again = run_reconcile(spark, s, ReconcileOptions(progress=False, sample=30))
        assert "refused" not in again.report and not again.report["repair"]["failures"], again.report
        verify = _until_verified(env, seconds=60)
        assert verify.returncode == 0, verify.stdout[-3000:]

        async def present(users: list[str]) -> list[str]:
            async with GorseClient.from_settings(s) as c:
                found = [u for u in users if await c.get_user(u) is not None]
                fb = {f.user_id for f in await c.export_feedback()}
            return found + [f"feedback of {u}" for u in users if u in fb]

        erased = sorted(users_before - _user_ids(s))
        assert erased, done["summary"]
        assert asyncio.run(present(erased)) == []
    finally:
        for p in reversed(procs):
            _stop(p)
        drop_slot(settings.source_dsn, env["GORSE_CDC_SOURCE__SLOT_NAME"])


# ---- (b), (c): refusals ------------------------------------------------------------------------
USERS = [[u, 20 + u % 50, "MF"[u % 2], f"job{u % 7}", f"{u:05d}"] for u in range(1, 31)]
MOVIES = [[m, f"Movie {m}", "1990-01-02", "Drama|War"] for m in range(10, 15)]
RATINGS = [[u, m, (u + m) % 5 + 1, "2020-01-01 00:00:00"] for u in range(1, 31) for m in range(10, 13)]


@pytest.fixture
def private_dms(stack, settings, spark):
    prefix = f"safety-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"s3": settings.s3.model_copy(update={"prefix": prefix})})
    client = boto3.client("s3", **s.aws_client_kwargs("s3"))
    w = DmsWriter(s3_put(client, s.s3.bucket), prefix=prefix)
    w.definitions()
    for part in (USERS[:10], USERS[10:20], USERS[20:]):  # LOAD00000001..3
        w.load("users", part)
    w.load("movies", MOVIES)
    w.load("ratings", RATINGS)
    base = run_reconcile(spark, _reconcile_settings(s, force_deletes=True), QUIET_NO_CHECK)
    assert base.exit_code in (0, 1) and not base.report["repair"]["failures"]
    return s, client


QUIET_NO_CHECK = ReconcileOptions(progress=False, source_check=False, sample=50)


async def _counts(s) -> tuple[int, int, int]:
    async with GorseClient.from_settings(s) as c:
        return len(await c.export_users()), len(await c.export_items()), len(await c.export_feedback())


def test_a_partial_load_folder_refuses_the_repair_and_deletes_nothing(spark, private_dms) -> None:
    s, client = private_dms
    before = asyncio.run(_counts(s))
    assert before[0] == len(USERS)
    client.delete_object(Bucket=s.s3.bucket, Key=f"{s.s3.prefix}/public/users/LOAD00000002.csv")
    out = run_reconcile(spark, s, QUIET_NO_CHECK)
    assert out.exit_code == ExitCode.FAILURE
    why = out.report["refused"]
    assert "partial full load" in why and "table users" in why and "LOAD00000002" in why
    assert f"s3://{s.s3.bucket}/{s.s3.prefix}/public/users/" in why and "\n" not in why
    assert out.report["drift"]["users"]["extra"] == 10  # what a repair would have deleted
    assert out.report["repair"]["applied"] == {}
    assert asyncio.run(_counts(s)) == before  # nothing deleted


def test_deletes_past_the_cap_are_refused_and_forcing_them_deletes(spark, private_dms) -> None:
    s, _ = private_dms
    extra = [Item(f"cap-{i}") for i in range(8)]

    async def inject() -> None:
        async with GorseClient.from_settings(s) as c:
            await c.upsert_items(extra)

    asyncio.run(inject())
    capped = _reconcile_settings(s, delete_cap_min_rows=0, max_delete_share=0.2)  # 8 of 13 items
    out = run_reconcile(spark, capped, QUIET_NO_CHECK)
    assert out.exit_code == ExitCode.FAILURE and "items 8 of 13" in out.report["refused"]
    assert asyncio.run(_counts(s))[1] == len(MOVIES) + len(extra)
    forced = run_reconcile(spark, _reconcile_settings(capped, force_deletes=True), QUIET_NO_CHECK)
    assert "refused" not in forced.report and forced.report["repair"]["applied"] == {"items.extra": 8}
    assert asyncio.run(_counts(s))[1] == len(MOVIES)
