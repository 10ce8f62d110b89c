"""Faults on the real stack: kill -9 of consumer processes, Gorse stopped mid-stream, a worker
of two killed. After each, Gorse must equal the database (nothing lost, nothing doubled)."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest

from consumers.verify import render, verify
from entrypoints.stack.components import Stack
from tests.integration.consumers.conftest import (
    Env,
    consumer_process,
    converged,
    drained,
    leases,
    running_consumer,
    wait_drained,
)


async def _wait_exit(proc: object, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise AssertionError("consumer did not exit after SIGTERM")
        await asyncio.sleep(0.1)
    return int(proc.returncode)  # type: ignore[attr-defined]


async def test_kill_9_at_random_moments_loses_nothing(env: Env, tmp_log: Path) -> None:
    rng = random.Random(11)
    env.feed.put(env.feed.load(users=80, movies=100, ratings=800))
    kills = 0
    for round_ in range(6):
        env.feed.put(env.feed.activity(800))
        # the same worker id after a crash (a restarted host), or a new one (lease expiry)
        proc = consumer_process(env, "w-kill" if round_ % 3 else f"w-new-{round_}", tmp_log)
        await asyncio.sleep(rng.uniform(1.5, 3.5))  # imports take ~1 s: kill while it works
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 5, tmp_log.read_text()[-3000:]  # noqa: ASYNC240
    proc = consumer_process(env, "w-final", tmp_log)
    try:
        await wait_drained(env)
        proc.send_signal(signal.SIGTERM)
        assert await _wait_exit(proc, 20) == 0  # graceful: flush, checkpoint, release
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(le.lease_owner is None for le in leases(env.settings, env.lease_table))
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)


async def test_gorse_down_for_30s_then_back_nothing_lost(env: Env, settings: object) -> None:
    env.feed.put(env.feed.load(users=60, movies=80, ratings=600))
    stack = Stack(env.settings)
    async with running_consumer(env.settings):
        await wait_drained(env)
        stack.procs.stop("gorse")
        try:
            env.feed.put(env.feed.activity(1500))
            await asyncio.sleep(30)
            # progress held: nothing checkpointed past what Gorse has not got
            assert not drained(env.settings, env.lease_table, env.feed.last_sequence)
        finally:
            await asyncio.to_thread(stack.start_gorse)
        await wait_drained(env)  # the same consumer recovers by itself
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)


@pytest.mark.parametrize("env", [4], indirect=True)
async def test_two_workers_one_killed_the_other_takes_over(env: Env, tmp_log: Path) -> None:
    env.feed.put(env.feed.load(users=60, movies=80, ratings=600))
    a = consumer_process(env, "worker-a", tmp_log)
    b = consumer_process(env, "worker-b", tmp_log)
    try:
        deadline = time.monotonic() + 60
        while True:  # both hold leases: the shards are balanced 2/2
            owners = [le.lease_owner for le in leases(env.settings, env.lease_table)]
            if owners.count("worker-a") == 2 and owners.count("worker-b") == 2:
                break
            assert time.monotonic() < deadline, owners
            await asyncio.sleep(0.3)
        a.send_signal(signal.SIGKILL)
        a.wait()
        env.feed.put(env.feed.activity(1500))
        await wait_drained(env)
        owners = [le.lease_owner for le in leases(env.settings, env.lease_table)]
        assert owners == ["worker-b"] * 4
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)


@pytest.mark.parametrize("env", [4], indirect=True)
async def test_a_lease_asked_for_while_its_owner_is_stuck_retrying_moves_without_losing_order(
    env: Env, tmp_log: Path
) -> None:
    """Gorse down: worker a retries its batches on every shard. Worker b joins and asks for
    leases; a hands them over only after its writes stopped (aborted after the handoff grace,
    nothing checkpointed). Gorse back: both go on, and Gorse equals the database."""
    env.feed.put(env.feed.load(users=60, movies=80, ratings=600))
    stack = Stack(env.settings)
    a = consumer_process(env, "worker-a", tmp_log)
    b = None
    try:
        await wait_drained(env)
        stack.procs.stop("gorse")
        try:
            env.feed.put(env.feed.activity(1500))
            await asyncio.sleep(3)  # a holds every lease and retries every shard's batch
            b = consumer_process(env, "worker-b", tmp_log)
            deadline = time.monotonic() + 60
            while True:
                owners = [le.lease_owner for le in leases(env.settings, env.lease_table)]
                if owners.count("worker-b") == 2:
                    break
                assert time.monotonic() < deadline, owners
                await asyncio.sleep(0.3)
            assert not drained(env.settings, env.lease_table, env.feed.last_sequence)
        finally:
            await asyncio.to_thread(stack.start_gorse)
        env.feed.put(env.feed.activity(500))
        drift = await converged(env)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                await _wait_exit(p, 20)
    text = await asyncio.to_thread(tmp_log.read_text)
    assert '"handoff requested"' in text and '"lease handed off"' in text, text[-3000:]
    assert drift.total == 0, render(drift)


@pytest.mark.parametrize("env", [4], indirect=True)
async def test_two_workers_killed_and_restarted_at_random_under_load_converge(
    env: Env, tmp_log: Path
) -> None:
    """The storm that left erased users in Gorse: two workers share the shards, each is killed
    with SIGKILL at random moments and restarted at once (so leases expire, are taken, and are
    asked back by the restarted worker) while changes keep coming."""
    rng = random.Random(5)
    env.feed.put(env.feed.load(users=80, movies=100, ratings=800))
    procs = {w: consumer_process(env, w, tmp_log) for w in ("storm-a", "storm-b")}
    kills = 0
    try:
        for _ in range(8):
            env.feed.put(env.feed.activity(400))
            await asyncio.sleep(rng.uniform(1.5, 3.0))
            victim = rng.choice(sorted(procs))
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            procs[victim] = consumer_process(env, victim, tmp_log)
        drift = await converged(env)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                await _wait_exit(p, 20)
    assert kills == 8
    assert drift.total == 0, render(drift)
