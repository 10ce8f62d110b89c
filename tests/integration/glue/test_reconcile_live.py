"""A reconcile that runs while the database changes and the stream is live leaves Gorse equal
to the database once the stream drains (`gorse-cdc verify`): it never undoes a newer change.

Real processes: the local DMS (producers/), the consumer (consumers/), the activity generator;
the reconcile runs in this process with --source-check during the activity."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glue.job import ReconcileOptions, run_reconcile
from gorse_cdc.gorse import GorseClient, Item
from producers.dms.slot import drop_slot
from tests.integration.glue.conftest import private_pipeline

MISSING = [
    m for m in ("producers.dms", "consumers.cli", "consumers.verify") if importlib.util.find_spec(m) is None
]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"needs the local DMS and the consumer: {MISSING} absent"),
]
CLI = [sys.executable, "-m", "entrypoints.cli"]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


QUIET = ReconcileOptions(progress=False, report_dir=Path("/tmp/gorse-cdc-test-reports"))


async def _inject_drift(settings) -> None:
    async with GorseClient.from_settings(settings) as c:
        await c.upsert_items([Item("live-extra-1"), Item("live-extra-2", {"genres": ["Z"]})])


def _until_verified(env: dict[str, str], seconds: float, reconcile=None) -> subprocess.CompletedProcess[str]:
    """Wait for the stream to drain: verify until equal (a convergence wait, not a timing
    assertion); ``reconcile`` runs once first when given."""
    if reconcile is not None:
        time.sleep(8)  # the full load lands in S3 first
        reconcile()
    deadline = time.monotonic() + seconds
    while True:
        verify = subprocess.run(
            [*CLI, "verify", "--json"], env=env, capture_output=True, text=True, timeout=300
        )
        if verify.returncode == 0 or time.monotonic() > deadline:
            return verify
        time.sleep(3)


def test_reconcile_during_activity_never_undoes_the_stream(stack, settings, spark, tmp_path: Path) -> None:
    env, s = private_pipeline(settings, "live")
    small = ["--users", "80", "--movies", "30", "--ratings", "1200", "--seed", "5", "--truncate"]
    gen = subprocess.run([*CLI, "data", "generate", *small], env=env, capture_output=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    procs = []
    try:
        procs.append(
            _start(
                ["dms", "run", "--mode", "full-load-and-cdc", "--progress-seconds", "60"],
                env,
                tmp_path / "dms.log",
            )
        )
        procs.append(_start(["consume", "--metrics-port", "0"], env, tmp_path / "consume.log"))
        # precondition: Gorse = database (the full load applied, leftovers of other tests removed)
        # (the first reconcile removes what other tests left in the shared Gorse: forced deletes)
        forced = s.model_copy(update={"reconcile": s.reconcile.model_copy(update={"force_deletes": True})})
        pre = _until_verified(env, seconds=90, reconcile=lambda: run_reconcile(spark, forced, QUIET))
        assert pre.returncode == 0, pre.stdout[-3000:]
        asyncio.run(_inject_drift(settings))  # drift the stream never touches: must be repaired
        activity = _start(
            ["data", "activity", "--rate", "40", "--duration", "25", "--seed", "9"],
            env,
            tmp_path / "activity.log",
        )
        procs.append(activity)
        time.sleep(5)
        out = run_reconcile(spark, s, ReconcileOptions(source_check=True, progress=False, sample=20))
        assert out.exit_code in (0, 1), out.report
        assert not out.report["repair"]["failures"]
        assert out.report["repair"]["applied"].get("items.extra") == 2, out.report["repair"]
        assert activity.wait(120) == 0
        verify = _until_verified(env, seconds=120)
        logs = {p.name: p.read_text()[-1500:] for p in tmp_path.glob("*.log")}
        summary = {k: out.report[k] for k in ("drift", "repair", "cutoff", "source_rows")}
        if verify.returncode != 0:  # the whole story, for whoever reads the failure
            print("VERIFY", verify.stdout, "\nRECONCILE", json.dumps(summary, indent=1), "\nLOGS", logs)
        assert verify.returncode == 0
    finally:
        for p in reversed(procs):
            _stop(p)
        drop_slot(settings.source_dsn, env["GORSE_CDC_SOURCE__SLOT_NAME"])
