"""The replay tool on the real stack: Kinesis, the S3 archive and the dead-letter store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import psycopg
import pytest

from consumers.kinesis.reader import StartPosition
from consumers.replay.plan import RecordFilter, StopPoint
from consumers.replay.runner import Replay
from consumers.verify import render, verify
from entrypoints.stack.components import Stack
from gorse_cdc.errors import FatalError
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.dms.runner import run_dms
from tests.integration.consumers.conftest import drained, leases, running_consumer
from tests.integration.replay.conftest import ITEM_TTL_S

TRIM = StartPosition("TRIM_HORIZON")


async def snapshot(settings: Settings) -> tuple[list[object], list[object], list[object]]:
    async with GorseClient.from_settings(settings) as g:
        users = sorted(
            (u.user_id, orjson.dumps(u.to_json(), option=orjson.OPT_SORT_KEYS))
            for u in await g.export_users()
        )
        items = sorted(
            (i.item_id, orjson.dumps(i.to_json(), option=orjson.OPT_SORT_KEYS))
            for i in await g.export_items()
        )
        fb = sorted((f.key, f.value, f.timestamp) for f in await g.export_feedback())
    return users, items, fb  # type: ignore[return-value]


def job(settings: Settings, name: str) -> Settings:
    return settings.model_copy(update={"replay": settings.replay.model_copy(update={"job": name})})


async def test_wiped_gorse_replayed_from_trim_horizon_equals_database(history: Settings) -> None:
    Stack(history).reset_gorse()
    summary = await Replay(job(history, "wipe"), progress=False).kinesis(TRIM, StopPoint())
    assert summary.read > 3000 and summary.dead_lettered == 0
    drift = await verify(history)
    assert drift.total == 0, render(drift)

    # a replay over a range already applied changes nothing
    before = await snapshot(history)
    again = await Replay(job(history, "again"), progress=False).kinesis(TRIM, StopPoint())
    assert again.applied == summary.applied
    after = await snapshot(history)
    for kind, b, a in zip(("users", "items", "feedback"), before, after, strict=True):
        changed = sorted(set(map(repr, b)) ^ set(map(repr, a)))
        assert not changed, f"{kind}: {changed[:6]}"


async def test_s3_archive_gives_the_same_state_as_kinesis(history: Settings) -> None:
    Stack(history).reset_gorse()
    await Replay(job(history, "k"), progress=False).kinesis(TRIM, StopPoint())
    from_kinesis = await snapshot(history)
    Stack(history).reset_gorse()
    summary = await Replay(job(history, "s3"), progress=False).archive(None, None, include_load=True)
    assert summary.read > 3000 and summary.dead_lettered == 0
    assert await snapshot(history) == from_kinesis
    drift = await verify(history)
    assert drift.total == 0, render(drift)


async def test_dry_run_and_filters_write_nothing(history: Settings) -> None:
    Stack(history).reset_gorse()
    dry = await Replay(job(history, "dry"), dry_run=True, progress=False).kinesis(TRIM, StopPoint())
    assert dry.applied > 0
    assert await snapshot(history) == ([], [], [])
    only = Replay(
        job(history, "only-movies"), record_filter=RecordFilter(frozenset({"movies"})), progress=False
    )
    s = await only.kinesis(TRIM, StopPoint())
    assert s.filtered > 0
    users, items, fb = await snapshot(history)
    assert items and not fb and not users


def _env(s: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "GORSE_CDC_KINESIS__STREAM_NAME": s.kinesis.stream_name,
        "GORSE_CDC_REPLAY__TABLE": s.replay.table,
        "GORSE_CDC_LEASES__TABLE": s.leases.table,  # not the default table (the demo's live leases)
        "GORSE_CDC_REPLAY__JOB": "killed",
        "GORSE_CDC_DEAD_LETTERS__S3_PREFIX": s.dead_letters.s3_prefix,
    }


def test_killed_replay_resumes_and_loses_nothing(history: Settings, tmp_path: Path) -> None:
    """A replay writes each shard's coalesced range once it is read: killed before, it wrote
    nothing of that shard; run again it starts the shard over and ends equal."""
    Stack(history).reset_gorse()
    argv = [sys.executable, "-m", "entrypoints.cli", "replay", "kinesis", "--rate", "600", "--no-progress"]
    log = (tmp_path / "replay.log").open("ab")
    proc = subprocess.Popen(argv, env=_env(history), stdout=log, stderr=log)
    time.sleep(2.5)  # ~1,500 of the history's records read at 600/s
    assert proc.poll() is None, (tmp_path / "replay.log").read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    drift = asyncio.run(verify(history))
    assert drift.total > 0  # it really stopped halfway
    done = subprocess.run(argv, env=_env(history), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    drift = asyncio.run(verify(history))
    assert drift.total == 0, render(drift)


def last_sequences(settings: Settings) -> dict[str, str]:
    """The last sequence number of every shard of the stream (read to the tip)."""
    k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    out: dict[str, str] = {}
    for shard in k.list_shards(StreamName=settings.kinesis.stream_name)["Shards"]:
        it = k.get_shard_iterator(
            StreamName=settings.kinesis.stream_name,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10_000)
            if r["Records"]:
                out[shard["ShardId"]] = r["Records"][-1]["SequenceNumber"]
            if not r["Records"] and not r.get("MillisBehindLatest"):
                break
            it = r.get("NextShardIterator")
    return out


async def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.3)


async def test_replay_beside_live_consumer_borrows_and_returns_its_leases(history: Settings) -> None:
    Stack(history).reset_gorse()
    tips = last_sequences(history)
    table = history.leases.table
    async with running_consumer(history) as live:
        await wait_for(lambda: drained(history, table, tips), f"not drained: {leases(history, table)}")
        before = {x.lease_key: x.checkpoint for x in leases(history, table)}
        await Replay(job(history, "beside"), progress=False).kinesis(TRIM, StopPoint())
        # the live consumer takes its leases back, at the checkpoints it had
        await wait_for(lambda: len(live.coordinator.held) == len(tips), "leases not taken back", 30)
        after = leases(history, table)
    # the live consumer goes on at the checkpoints it had (it may pass them: its own refresh
    # records for genre edits follow the history); the replay never moved them itself
    assert set(before) == {x.lease_key for x in after}
    assert all(int(x.checkpoint) >= int(before[x.lease_key]) for x in after)
    assert {x.lease_owner for x in after} == {live.worker_id} and not any(x.pinned for x in after)
    replay_rows = {x.lease_key for x in leases(history, history.replay.table)}
    assert {f"beside/{s}" for s in tips} <= replay_rows
    drift = await verify(history)
    assert drift.total == 0, render(drift)


def heaviest_user(settings: Settings) -> int:
    with psycopg.connect(settings.source_dsn) as conn:
        row = conn.execute(
            "SELECT user_id FROM ratings GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
        ).fetchone()
    assert row is not None
    return int(row[0])


def erase(settings: Settings, user_id: int) -> None:
    with psycopg.connect(settings.source_dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("DELETE FROM ratings WHERE user_id = %s", (user_id,))
        conn.execute("DELETE FROM users WHERE user_id = %s", (user_id,))


async def test_a_replay_from_trim_horizon_during_an_erasure_never_brings_the_user_back(
    history: Settings,
) -> None:
    """The operation that resurrected an erased user: Gorse rebuilt by a replay from
    TRIM_HORIZON while the live consumer runs and the database keeps changing (activity, and
    the user with the most ratings erased mid-replay). After both: Gorse equals the database
    and the erased user has no trace."""
    Stack(history).reset_gorse()
    table = history.leases.table
    victim = heaviest_user(history)
    async with running_consumer(history):
        tips = last_sequences(history)
        await wait_for(lambda: drained(history, table, tips), f"not drained: {leases(history, table)}")
        replay = asyncio.create_task(
            Replay(job(history, "erasure"), rate=800, progress=False).kinesis(TRIM, StopPoint())
        )
        await asyncio.sleep(1.0)

        def change_the_database() -> None:
            erase(history, victim)
            run_activity(history, changes=300, seed=21)
            run_dms(history, until_idle=True, idle_s=1.0)

        await asyncio.gather(replay, asyncio.to_thread(change_the_database))
        tips = last_sequences(history)
        await wait_for(lambda: drained(history, table, tips), f"not drained: {leases(history, table)}")
        # liked labels of users who liked an item within the item-cache TTL of its genre edit
        # are re-told after the TTL by the live consumer: verify until then
        deadline = time.monotonic() + ITEM_TTL_S + 10
        while (drift := await verify(history)).total and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
    assert drift.total == 0, render(drift)
    async with GorseClient.from_settings(history) as g:
        assert await g.get_user(str(victim)) is None
        assert not [f for f in await g.export_feedback() if f.user_id == str(victim)]


async def test_an_archive_replay_or_a_redrive_beside_a_live_consumer_is_refused(history: Settings) -> None:
    table = history.leases.table
    async with running_consumer(history):
        await wait_for(lambda: any(x.lease_owner for x in leases(history, table)), "no lease taken", 30)
        with pytest.raises(FatalError, match=r"live consumer .* is running"):
            await Replay(job(history, "refused"), progress=False).archive(None, None)
        with pytest.raises(FatalError, match="--beside-live"):
            await Replay(job(history, "refused"), progress=False).dead_letters()
    assert not [x for x in leases(history, history.replay.table) if x.lease_key.startswith("refused/")]


async def test_dead_letters_redriven_after_the_fix(history: Settings, tmp_path: Path) -> None:
    """Mapping without the movies table: every movie record is dead-lettered. After the fix
    (the default mapping) a re-drive applies them and they leave the store; a record that is
    still bad goes back with its new reason."""
    Stack(history).reset_gorse()
    spec = (Path(__file__).parents[3] / "gorse_cdc" / "mapping" / "default.toml").read_text()
    broken = spec[: spec.index("[tables.movies]")] + spec[spec.index("[tables.ratings]") :]
    path = tmp_path / "broken.toml"
    path.write_text(broken)
    bad = history.model_copy(update={"mapping": history.mapping.model_copy(update={"path": path})})
    s = await Replay(job(bad, "broken"), progress=False).kinesis(TRIM, StopPoint())
    assert s.dead_lettered > 0
    s3 = boto3.client("s3", **history.aws_client_kwargs("s3"))
    # one more letter that no fix will cure
    garbage = {
        "raw": "not json",
        "raw_encoding": "utf-8",
        "reason": "x",
        "error_type": "DmsDecodeError",
        "shard_id": "shard-x",
        "sequence_number": "1",
        "source": "test",
    }
    s3.put_object(
        Bucket=history.s3.bucket,
        Key=f"{history.dead_letters.s3_prefix}/test/shard-x/1.json",
        Body=orjson.dumps(garbage),
    )

    def stored() -> list[dict[str, object]]:
        keys = s3.list_objects_v2(Bucket=history.s3.bucket, Prefix=history.dead_letters.s3_prefix + "/")
        return [
            orjson.loads(s3.get_object(Bucket=history.s3.bucket, Key=o["Key"])["Body"].read())
            for o in keys.get("Contents", [])
        ]

    assert len(stored()) == s.dead_lettered + 1
    assert all(d["table"] == "movies" for d in stored() if d["source"] != "test")
    r = await Replay(history, progress=False).dead_letters()
    # only the newest letter of each movie is applied; the older ones are superseded by it
    assert r.redriven + r.superseded_older == s.dead_lettered and r.redriven > 0 and not r.superseded_later
    left = stored()
    assert len(left) == 1 and left[0]["shard_id"] == "shard-x"
    assert left[0]["reason"] != "x" and "JSON" in str(left[0]["reason"])
    async with GorseClient.from_settings(history) as g:
        assert len(await g.export_items()) > 0


async def test_a_replay_stopped_past_its_lease_writes_nothing_and_fails(
    history: Settings, tmp_path: Path
) -> None:
    """The replay (a real process) borrows the leases, is stopped with SIGSTOP past the failover
    time, the live consumer takes its leases back and applies an erasure; resumed, the replay
    must write nothing of what it read (its plan holds the erased user's ratings), say why, and
    exit non-zero. Before the fix it wrote its plan unguarded and the user came back."""
    Stack(history).reset_gorse()
    table = history.leases.table
    victim = heaviest_user(history)
    env = {**_env(history), "GORSE_CDC_REPLAY__JOB": "stopped", "GORSE_CDC_LEASES__FAILOVER_MS": "3000"}
    argv = [sys.executable, "-m", "entrypoints.cli", "replay", "kinesis", "--restart", "--rate", "300"]
    async with running_consumer(history) as live:
        tips = last_sequences(history)
        await wait_for(lambda: drained(history, table, tips), f"not drained: {leases(history, table)}")
        log = (tmp_path / "replay.log").open("ab")
        proc = subprocess.Popen([*argv, "--no-progress"], env=env, stdout=log, stderr=log)  # noqa: ASYNC220
        try:
            await wait_for(
                lambda: any((x.lease_owner or "").startswith("replay:") for x in leases(history, table)),
                "the replay borrowed no lease",
                60,
            )
            await asyncio.sleep(1.0)  # reading at 300 records/s: far from the end of the range
            proc.send_signal(signal.SIGSTOP)
            # the pinned leases expire (3 s failover) and the live consumer takes them back
            await wait_for(lambda: len(live.coordinator.held) == len(tips), "leases not taken back", 60)
            await asyncio.to_thread(erase, history, victim)
            await asyncio.to_thread(run_dms, history, until_idle=True, idle_s=1.0)
            async with GorseClient.from_settings(history) as g:
                await wait_for_async(lambda: g.get_user(str(victim)), "the erasure was not applied")
            proc.send_signal(signal.SIGCONT)
            rc = await asyncio.to_thread(proc.wait, 300)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            log.close()
        out = (tmp_path / "replay.log").read_text()
        assert rc == 2, out[-3000:]
        assert "the replay lost the lease of shard" in out and "nothing more of" in out, out[-3000:]
        tips = last_sequences(history)
        await wait_for(lambda: drained(history, table, tips), f"not drained: {leases(history, table)}")
        async with GorseClient.from_settings(history) as g:
            assert await g.get_user(str(victim)) is None, "the replay brought an erased user back"
            assert not [f for f in await g.export_feedback() if f.user_id == str(victim)]


async def wait_for_async(get: Callable[[], Any], what: str, timeout_s: float = 60.0) -> None:
    """Until ``get()`` answers None."""
    deadline = time.monotonic() + timeout_s
    while await get() is not None:
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_an_operation_filter_is_refused_unless_dry_run(history: Settings) -> None:
    """Dropping a key's deletes and keeping its inserts would put a deleted user's ratings back."""
    inserts = RecordFilter(operations=frozenset({"insert"}))
    with pytest.raises(FatalError, match="allowed only with --dry-run"):
        await Replay(job(history, "ops"), record_filter=inserts, progress=False).kinesis(TRIM, StopPoint())
    with pytest.raises(FatalError, match="allowed only with --dry-run"):
        await Replay(job(history, "ops"), record_filter=inserts, progress=False).archive(None, None)
    dry = await Replay(job(history, "ops"), record_filter=inserts, dry_run=True, progress=False).kinesis(
        TRIM, StopPoint()
    )
    assert dry.filtered > 0


async def test_a_bounded_replay_beside_a_live_consumer_is_refused(history: Settings) -> None:
    """Beside the live consumer a replay writes its range's final state: a range that ends
    before the live checkpoint (--until-timestamp / --until-sequence) would set back every key
    changed after it (seen as titles and ratings set back in test_concurrent_writers). Refused,
    with nothing written and no lease kept."""
    tips = last_sequences(history)
    table = history.leases.table
    bound = datetime.now(UTC) - timedelta(days=1)
    async with running_consumer(history):
        await wait_for(lambda: drained(history, table, tips), f"not drained: {leases(history, table)}")
        before = await snapshot(history)
        for stop in (StopPoint(timestamp=bound), StopPoint(sequence_number=min(tips.values(), key=int))):
            with pytest.raises(FatalError, match="until-timestamp / --until-sequence are refused"):
                await Replay(job(history, "bounded"), progress=False).kinesis(TRIM, stop)
        assert not any((x.lease_owner or "").startswith("replay:") for x in leases(history, table))
        assert await snapshot(history) == before
