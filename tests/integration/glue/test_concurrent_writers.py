"""Remembered likes (on by default) stay exact beside every other writer of feedback: the live
consumer, a reconcile repair and a Kinesis replay run at once, on random activity, and Gorse
ends equal to the database (`gorse-cdc verify`, liked labels included), with no second repair.

How it breaks without the reconcile telling the owners (glue.writes, reread refresh records):
the drift below removes likes from Gorse behind everyone's back; the live consumer then reads
those users' likes (its memory misses them); the reconcile puts the likes back; the next
change of such a user is computed from the memory and its liked labels stay wrong. The replay
borrows the consumer's leases meanwhile (the handoff makes the consumer forget on its return).

Randomized: the seed is printed (GORSE_CDC_TEST_SEED=N repeats a run)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from glue.job import ReconcileOptions, run_reconcile
from gorse_cdc.gorse import GorseClient
from producers.dms.slot import drop_slot
from tests.integration.glue.conftest import private_pipeline
from tests.integration.glue.test_reconcile_live import QUIET, _start, _stop, _until_verified

pytestmark = [pytest.mark.slow]
CLI = [sys.executable, "-m", "entrypoints.cli"]


async def _drop_likes(settings, rng: random.Random, users: int) -> int:
    """Delete a random share of some users' likes in Gorse (drift the stream never repairs)."""
    dropped = 0
    async with GorseClient.from_settings(settings) as c:
        for n in rng.sample(range(1, users + 1), 25):
            likes = await c.user_feedback(str(n), "like")
            for f in rng.sample(likes, len(likes) // 2):
                await c.delete_feedback(f.user_id, f.item_id, "like")
                dropped += 1
    return dropped


def test_consumer_reconcile_and_replay_at_once_end_equal(stack, settings, spark, tmp_path: Path) -> None:
    seed = int(os.environ.get("GORSE_CDC_TEST_SEED") or random.randrange(1 << 30))
    print(f"GORSE_CDC_TEST_SEED={seed}")
    rng = random.Random(seed)
    env, s = private_pipeline(settings, "writers")
    env = {**env, "GORSE_CDC_REPLAY__JOB": f"writers-{seed}"}
    assert s.consumer.remember_likes, "remembered likes are the default this test guards"
    users = 60
    small = [
        "--users",
        str(users),
        "--movies",
        "40",
        "--ratings",
        "1500",
        "--seed",
        str(seed % 1000),
        "--truncate",
    ]
    gen = subprocess.run([*CLI, "data", "generate", *small], env=env, capture_output=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    procs = []
    try:
        started = datetime.now(UTC)
        procs.append(_start(["dms", "run", "--mode", "full-load-and-cdc"], env, tmp_path / "dms.log"))
        procs.append(_start(["consume", "--metrics-port", "0"], env, tmp_path / "consume.log"))
        forced = s.model_copy(update={"reconcile": s.reconcile.model_copy(update={"force_deletes": True})})
        pre = _until_verified(env, seconds=90, reconcile=lambda: run_reconcile(spark, forced, QUIET))
        assert pre.returncode == 0, pre.stdout[-3000:]
        dropped = asyncio.run(_drop_likes(s, rng, users))
        assert dropped > 0
        rate, duration = rng.choice([30, 60, 90]), 40
        activity = _start(
            ["data", "activity", "--rate", str(rate), "--duration", str(duration), "--seed", str(seed % 997)],
            env,
            tmp_path / "activity.log",
        )
        procs.append(activity)
        time.sleep(rng.uniform(3, 8))  # the consumer reads the drifted users' likes meanwhile
        replay = _start(
            ["replay", "kinesis", "--from-timestamp", started.isoformat(), "--rate", "400", "--no-progress"],
            env,
            tmp_path / "replay.log",
        )
        procs.append(replay)
        out = run_reconcile(spark, s, ReconcileOptions(source_check=True, progress=False, sample=20))
        assert out.exit_code in (0, 1), out.report
        assert not out.report["repair"]["failures"]
        assert replay.wait(240) == 0, (tmp_path / "replay.log").read_text()[-3000:]
        assert activity.wait(120) == 0
        verify = _until_verified(env, seconds=150)
        if verify.returncode != 0:
            logs = {p.name: p.read_text()[-1500:] for p in tmp_path.glob("*.log")}
            print("VERIFY", verify.stdout[-4000:], "\nREPAIR", out.report["repair"], "\nLOGS", logs)
        assert verify.returncode == 0, f"seed {seed}: Gorse differs from the database (see the output)"
    finally:
        for p in reversed(procs):
            _stop(p)
        drop_slot(settings.source_dsn, env["GORSE_CDC_SOURCE__SLOT_NAME"])
