"""`gorse-cdc demo`: the main job on the local stack, end to end, on sample data.

Resets the demo's resources, loads a synthetic MovieLens-shaped world into PostgreSQL, starts
the local DMS (full load + CDC to Kinesis and S3) and the consumer as real processes, runs an
OTT-like activity load, waits until Gorse equals the database (`verify`), prints figures, then
runs the reconcile in dry-run mode (zero drift expected) and stops what it started."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import psycopg

from gorse_cdc.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on sample data against the local stack, then verify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--movies", type=int, default=500)
    p.add_argument("--ratings", type=int, default=20_000)
    p.add_argument("--changes", type=int, default=5_000, help="activity changes after the load")
    p.add_argument("--rate", type=float, default=500.0, help="activity changes/s (default 500)")
    p.add_argument("--timeout", type=float, default=300.0, help="give up waiting for Gorse after this")
    p.set_defaults(func=run)


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def _reset(settings: Settings) -> None:
    from entrypoints.stack.components import Stack
    from entrypoints.stack.resources import ensure_all, ensure_stream
    from producers.dms.slot import drop_slot

    if settings.source.engine == "mysql":  # its position lives in the S3 task state, cleared below
        from producers.db import connect, truncate_all

        with connect(settings, autocommit=True) as conn:
            truncate_all(conn)
    else:
        drop_slot(settings.source_dsn, settings.source.slot_name)
        with psycopg.connect(settings.source_dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE ratings, movies, users")
    kinesis = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    with contextlib.suppress(kinesis.exceptions.ResourceNotFoundException):
        kinesis.delete_stream(StreamName=settings.kinesis.stream_name)
        while True:
            try:
                kinesis.describe_stream_summary(StreamName=settings.kinesis.stream_name)
                time.sleep(0.2)
            except kinesis.exceptions.ResourceNotFoundException:
                break
    ensure_all(settings)
    ensure_stream(settings)
    ddb = boto3.client("dynamodb", **settings.aws_client_kwargs("dynamodb"))
    with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
        ddb.delete_table(TableName=settings.leases.table)
    # the erasure log too: ids erased by an earlier run (or by tests on this stack) are re-used
    # by the new data set, and the events path refuses the events of logged users
    with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
        ddb.delete_table(TableName=settings.consumer.erasures_table)
    s3 = boto3.resource("s3", **settings.aws_client_kwargs("s3"))
    bucket = s3.Bucket(settings.s3.bucket)
    bucket.objects.filter(Prefix=settings.s3.prefix + "/").delete()
    bucket.objects.filter(Prefix=settings.dead_letters.s3_prefix + "/").delete()
    Stack(settings).reset_gorse()


def _check_source(settings: Settings) -> None:
    """The DMS's own preflight, here, so that a source not set up for replication is
    named at once in the demo's output (the same line `gorse-cdc dms run` prints)."""
    from producers.dms.slot import check_source, source_errors
    from producers.dms.source_errors import SourceSetupError

    if settings.source.engine == "mysql":
        from producers.dms.mysql.runner import check_mysql_source

        try:
            check_mysql_source(settings)
        except SourceSetupError as e:
            raise SystemExit(f"gorse-cdc demo: {e}") from None
        return
    try:
        with source_errors(settings.source_dsn, settings.source.slot_name):
            conn = psycopg.connect(settings.source_dsn, autocommit=True)
        with conn:
            check_source(conn, settings.source_dsn)
    except SourceSetupError as e:
        raise SystemExit(f"gorse-cdc demo: {e}") from None


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "--json-logs", *args],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env=os.environ.copy(),
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _exited_early(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The CLI's own one-line reason (its last `gorse-cdc ...:` line), and where the log is."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    reason = next((line for line in reversed(lines) if line.startswith("gorse-cdc ")), None)
    head = f"a pipeline process exited early (code {proc.returncode})"
    return f"{head}:\n  {reason}\n(log: {log})" if reason else f"{head}; see {log}"


async def _wait_equal(
    settings: Settings, timeout_s: float, procs: list[tuple[subprocess.Popen[bytes], Path]]
) -> tuple[int, float]:
    from consumers.verify import verify

    started = time.monotonic()
    total = -1
    while time.monotonic() - started < timeout_s:
        for p, log in procs:
            if p.poll() is not None:
                raise SystemExit(_exited_early(p, log))
        total = (await verify(settings)).total
        print(f"    differences between Gorse and the database: {total}", flush=True)
        if total == 0:
            break
        await asyncio.sleep(2)
    return total, time.monotonic() - started


def _reconcile_dry_run() -> int:
    """The nightly job's view, now that the DMS flushed its S3 files: expects no drift."""
    try:
        import glue.cli  # noqa: F401 - the reconcile needs pyspark (extra "spark")
    except ModuleNotFoundError:
        print("    (reconcile skipped: pyspark is not installed)")
        return 0
    _step("nightly reconcile from the S3 archive, dry run (expects no drift)")
    out = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "reconcile", "--dry-run", "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(out.stdout)
    except ValueError:
        print(out.stdout[-2000:] + out.stderr[-2000:], file=sys.stderr)
        return 2
    drift = {k: v for k, v in report.get("drift", {}).items() if isinstance(v, dict)}
    print(f"    expected {report.get('expected')}, Gorse {report.get('actual')}")
    for kind, d in drift.items():
        counts = ", ".join(f"{d.get(c)} {c}" for c in ("missing", "extra", "changed"))
        print(f"    drift in {kind}: {counts}")
    print(f"    phases (s): {report.get('phases_s')}  report: {report.get('report_path')}")
    return 0 if out.returncode == 0 else 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.verify import render, verify
    from producers.activity import run_activity
    from producers.synthetic import generate
    from producers.synthetic_model import GeneratorConfig

    logs = settings.stack.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _step("resetting the demo's data (database tables, stream, leases, S3 prefix, Gorse)")
    _reset(settings)
    _step(f"loading a synthetic world: {args.users} users, {args.movies} movies, {args.ratings} ratings")
    generate(settings, GeneratorConfig(args.users, args.movies, args.ratings, seed=7))
    _step("starting the local DMS (full load + CDC -> Kinesis and S3) and the consumer")
    _check_source(settings)
    dms_log, consumer_log = logs / "demo-dms.log", logs / "demo-consumer.log"
    dms = _spawn(["dms", "run"], dms_log)
    consumer = _spawn(["consume"], consumer_log)
    rc = 1
    try:
        _step(f"OTT activity: {args.changes} changes at {args.rate:.0f}/s")
        summary = run_activity(settings, changes=args.changes, rate=args.rate, seed=8)
        print(f"    {summary.describe()}", flush=True)
        _step("waiting until Gorse equals the database (gorse-cdc verify)")
        _, waited = asyncio.run(
            _wait_equal(settings, args.timeout, [(dms, dms_log), (consumer, consumer_log)])
        )
        print(f"    drained {waited:.1f} s after the activity ended", flush=True)
        drift = asyncio.run(verify(settings))
        print(render(drift))
        rc = 0 if drift.total == 0 else 1
    finally:
        _step("stopping the DMS and the consumer (the stack stays up: gorse-cdc stack down)")
        _stop(dms)
        _stop(consumer)
    if rc == 0:
        rc = _reconcile_dry_run()
    if rc == 0:
        from entrypoints.gateway_demo import start_gateway

        _step("the API for OTT apps: gateway (HTTPS) and its events consumer")
        start_gateway(settings)
    print("demo " + ("OK: Gorse equals the database" if rc == 0 else "FAILED"), flush=True)
    print(f"Gorse: {settings.gorse_url}  (API key in settings.gorse.api_key)")
    return rc
