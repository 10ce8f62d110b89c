"""Remembered likes (on by default) stay exact beside every other writer of feedback: the live
consumer, a Kinesis replay and a reconcile repair run at once, on random activity, and Gorse
ends equal to the database (`gorse-cdc verify`, liked labels included), with no second repair.

The drift: every like of half the users is deleted in Gorse behind everyone's back. The live
consumer then reads those users' likes (its memory misses them) as the activity touches them;
the replay borrows every lease meanwhile (the consumer forgets what it remembers when they come
back) and ends before the repair; the reconcile puts the likes back and tells each repaired
user's shard (glue/writes.py, reread refresh records); the activity goes on after the repair.
Without the telling (GORSE_CDC_RECONCILE__TELL_OWNERS=false) the consumer computes those users'
liked labels from its memory and verify finds them wrong.

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
    """Delete every like of some users in Gorse (drift the stream never repairs): their liked
    labels differ unless recomputed after the repair puts the likes back."""
    dropped = 0
    async with GorseClient.from_settings(settings) as c:
        for n in rng.sample(range(1, users + 1), users // 2):
            for f in await c.user_feedback(str(n), "like"):
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
        "300",  # few likes per user (~6): a user's liked labels tell their likes apart
        "--ratings",
        "900",
        "--seed",
        str(seed % 1000),
        "--truncate",
    ]
    gen = subprocess.run([*CLI, "data", "generate", *small], env=env, capture_output=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    procs = []
    try:
        procs.append(_start(["dms", "run", "--mode", "full-load-and-cdc"], env, tmp_path / "dms.log"))
        procs.append(_start(["consume", "--metrics-port", "0"], env, tmp_path / "consume.log"))
        forced = s.model_copy(update={"reconcile": s.reconcile.model_copy(update={"force_deletes": True})})
        pre = _until_verified(env, seconds=90, reconcile=lambda: run_reconcile(spark, forced, QUIET))
        assert pre.returncode == 0, pre.stdout[-3000:]
        dropped = asyncio.run(_drop_likes(s, rng, users))
        assert dropped > 0
        drifted = datetime.now(UTC)
        rate = rng.choice([10, 20, 40])
        activity = _start(  # stopped once the repair is written and more changes followed it
            ["data", "activity", "--rate", str(rate), "--duration", "600", "--seed", str(seed % 997)],
            env,
            tmp_path / "activity.log",
        )
        procs.append(activity)
        time.sleep(rng.uniform(2, 6))  # the consumer reads the drifted users' likes meanwhile
        # the replay borrows every lease (the live consumer hands them over and forgets what it
        # remembers when they come back) and rewrites the activity so far, up to the live
        # checkpoints (from before the drift it would put the deleted likes back itself); it
        # ends while the reconcile reads, so the repair lands after it
        replay = _start(
            ["replay", "kinesis", "--from-timestamp", drifted.isoformat(), "--rate", "5000", "--no-progress"],
            env,
            tmp_path / "replay.log",
        )
        procs.append(replay)
        out = run_reconcile(spark, s, ReconcileOptions(source_check=True, progress=False, sample=20))
        print("REPAIR", out.report["repair"]["applied"], "deferred", out.report["repair"].get("deferred"))
        assert out.exit_code in (0, 1), out.report
        assert not out.report["repair"]["failures"]
        assert out.report["repair"]["applied"].get("feedback.missing", 0) > 0, out.report["repair"]
        assert replay.wait(240) == 0, (tmp_path / "replay.log").read_text()[-3000:]
        time.sleep(rng.uniform(5, 15))  # the drifted users change again after the repair
        _stop(activity)
        verify = _until_verified(env, seconds=150)
        if verify.returncode != 0:
            logs = {p.name: p.read_text()[-1500:] for p in tmp_path.glob("*.log")}
            print("VERIFY", verify.stdout[-4000:], "\nREPAIR", out.report["repair"], "\nLOGS", logs)
        assert verify.returncode == 0, f"seed {seed}: Gorse differs from the database (see the output)"
    finally:
        for p in reversed(procs):
            _stop(p)
        drop_slot(settings.source_dsn, env["GORSE_CDC_SOURCE__SLOT_NAME"])
