"""The replay tool on the real stack: Kinesis, the S3 archive and the dead-letter store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import orjson

from consumers.kinesis.reader import StartPosition
from consumers.replay.plan import RecordFilter, StopPoint
from consumers.replay.runner import Replay
from consumers.verify import render, verify
from entrypoints.stack.components import Stack
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import drained, leases, running_consumer

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
    assert await snapshot(history) == before


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
        "GORSE_CDC_REPLAY__JOB": "killed",
        "GORSE_CDC_DEAD_LETTERS__S3_PREFIX": s.dead_letters.s3_prefix,
    }


def test_killed_replay_resumes_and_loses_nothing(history: Settings, tmp_path: Path) -> None:
    Stack(history).reset_gorse()
    argv = [sys.executable, "-m", "entrypoints.cli", "replay", "kinesis", "--rate", "600", "--no-progress"]
    log = (tmp_path / "replay.log").open("ab")
    proc = subprocess.Popen(argv, env=_env(history), stdout=log, stderr=log)
    table = history.replay.table
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for a first checkpoint, then kill -9
        cps = [
            x for x in leases(history, table) if x.lease_key.startswith("killed/") and x.checkpoint.isdigit()
        ]
        if cps:
            break
        time.sleep(0.2)
    assert cps, (tmp_path / "replay.log").read_text()
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


async def test_replay_beside_live_consumer_leaves_its_checkpoints(history: Settings) -> None:
    Stack(history).reset_gorse()
    tips = last_sequences(history)
    async with running_consumer(history):
        deadline = time.monotonic() + 120
        while not drained(history, history.leases.table, tips):
            assert time.monotonic() < deadline, leases(history, history.leases.table)
            await asyncio.sleep(0.3)
        before = {x.lease_key: (x.checkpoint, x.lease_owner) for x in leases(history, history.leases.table)}
        await Replay(job(history, "beside"), progress=False).kinesis(TRIM, StopPoint())
        await asyncio.sleep(1.0)  # the consumer keeps polling meanwhile
        after = {x.lease_key: (x.checkpoint, x.lease_owner) for x in leases(history, history.leases.table)}
    assert after == before
    replay_rows = {x.lease_key for x in leases(history, history.replay.table)}
    assert {f"beside/{s}" for s in tips} <= replay_rows
    drift = await verify(history)
    assert drift.total == 0, render(drift)


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
    assert r.redriven == s.dead_lettered
    left = stored()
    assert len(left) == 1 and left[0]["shard_id"] == "shard-x"
    assert left[0]["reason"] != "x" and "JSON" in str(left[0]["reason"])
    async with GorseClient.from_settings(history) as g:
        assert len(await g.export_items()) > 0
