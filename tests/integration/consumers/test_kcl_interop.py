"""Moving between the engines on one lease table, both ways (and once with a reshard): the
native consumer processes part of the stream and stops; the real KCL (consume --engine kcl)
resumes exactly at its checkpoints (its first record of each shard is the one right after the
native checkpoint: nothing re-read, nothing skipped); a shard is split while the KCL runs; the
KCL stops and the native consumer resumes at the KCL's checkpoints, children included (it
reads exactly the records after them). Gorse then equals the database.

The reshard runs on kinesis-local (served over h2c on its plain port): kinesalite never ends a
split shard's iterator, so neither engine could move on to the children there."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from consumers.leases.lease import SHARD_END
from consumers.metrics import Metrics
from consumers.verify import render
from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import Env, converged, leases, running_consumer, wait_drained
from tests.integration.consumers.kcl_engine import (
    kcl_process,
    log_events,
    next_sequence,
    records_between,
    started,
    stop,
    tail,
)


@pytest.fixture(scope="module")
def kinesis_local(settings: Settings) -> Iterator[Settings]:
    """A kinesis-local of this module's own, on ports of this stack's offset + 60."""
    st = settings.stack.model_copy(
        update={
            "kinesis_emulator": "kinesis-local",
            "port_offset": settings.stack.port_offset + 60,
            "dir": Path(settings.stack.dir) / "kinesis-local-kcl",
        }
    )
    stack = Stack(settings.model_copy(update={"stack": st}))
    part = stack.start_kinesis()
    try:
        yield settings.model_copy(
            update={"aws": settings.aws.model_copy(update={"kinesis_endpoint_url": part.endpoint})}
        )
    finally:
        stack.procs.stop("kinesis", timeout_s=3)


def on_kinesis_local(env: Env, kinesis_local: Settings) -> None:
    s = kinesis_local.model_copy(
        update={
            "kinesis": env.settings.kinesis,
            "leases": env.settings.leases,
            "consumer": env.settings.consumer,
        }
    )
    ensure_stream(s, env.stream, 2)
    env.feed.kinesis = boto3.client("kinesis", **s.aws_client_kwargs("kinesis"))
    env.settings = s


def split_first_shard(env: Env) -> None:
    k = boto3.client("kinesis", **env.settings.aws_client_kwargs("kinesis"))
    shard = k.list_shards(StreamName=env.stream)["Shards"][0]
    lo, hi = (int(shard["HashKeyRange"][k_]) for k_ in ("StartingHashKey", "EndingHashKey"))
    k.split_shard(
        StreamName=env.stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((lo + hi) // 2)
    )
    for _ in range(100):
        if (
            k.describe_stream_summary(StreamName=env.stream)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE"
        ):
            return
        time.sleep(0.1)
    raise AssertionError("stream not ACTIVE after the split")


def read_count(metrics: Metrics, shard: str) -> int:
    return int(metrics.records_read.labels(shard)._value.get())


async def test_native_to_kcl_and_back(env: Env, tmp_path: Path) -> None:
    await native_kcl_native(env, tmp_path / "kcl.log", reshard=False)


async def test_native_to_kcl_and_back_with_a_reshard(
    env: Env, tmp_path: Path, kinesis_local: Settings
) -> None:
    on_kinesis_local(env, kinesis_local)
    await native_kcl_native(env, tmp_path / "kcl.log", reshard=True)


async def native_kcl_native(env: Env, log: Path, *, reshard: bool) -> None:
    s = env.settings
    # 1. the native engine processes the first part and stops (checkpoints, releases)
    env.feed.put(env.feed.load(users=80, movies=100, ratings=800))
    async with running_consumer(s):
        await wait_drained(env)
    native = {le.lease_key: le.checkpoint for le in leases(s, env.lease_table)}
    assert len(native) == 2 and all(cp.isdigit() for cp in native.values()), native

    # 2. the KCL resumes at those checkpoints; a shard is split while it runs
    env.feed.put(env.feed.activity(800))
    proc = kcl_process(env, "kcl-a", log)
    try:
        await started(proc, log, shards=2)
        firsts = {str(e["shard"]): str(e["first_sequence"]) for e in log_events(log, "KCL first batch")}
        for shard, cp in native.items():
            assert firsts[shard] == next_sequence(s, env.stream, shard, cp), (shard, cp, firsts)
        if reshard:
            split_first_shard(env)
        env.feed.put(env.feed.activity(800))  # partly on the split shard's children
        await wait_drained(env)
        assert proc.poll() is None, tail(log)
    finally:
        code = stop(proc)
    assert code == 0, tail(log)
    kcl = {le.lease_key: le for le in leases(s, env.lease_table)}
    if reshard:
        assert len(kcl) == 4, kcl  # the KCL created the children's leases in the shared table
        assert kcl["shardId-000000000000"].checkpoint == SHARD_END
        children = [le for le in kcl.values() if le.parent_shard_ids]
        assert len(children) == 2, kcl
        assert all(le.parent_shard_ids == {"shardId-000000000000"} for le in children), children
    else:
        assert {le.lease_owner for le in kcl.values()} == {"kcl-a"}

    # 3. the native engine resumes at the KCL's checkpoints (children included)
    env.feed.put(env.feed.activity(800))
    metrics = Metrics()
    async with running_consumer(s, metrics=metrics):
        drift = await converged(env)
    assert drift.total == 0, render(drift)
    final = {le.lease_key: le.checkpoint for le in leases(s, env.lease_table)}
    for shard, lease in kcl.items():
        if lease.checkpoint == SHARD_END:
            assert read_count(metrics, shard) == 0, shard
            continue
        after = None if lease.checkpoint in ("TRIM_HORIZON", "LATEST") else lease.checkpoint
        expected = (
            records_between(s, env.stream, shard, after, final[shard]) if final[shard].isdigit() else None
        )
        assert expected is not None and read_count(metrics, shard) == expected, (shard, lease, final[shard])
