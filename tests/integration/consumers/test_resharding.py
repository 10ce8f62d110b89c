"""Resharding during ingest (split, then merge) on kinesis-local, which implements resharding
faithfully: per-key order holds (children start only after all their parents ended) and
nothing is lost. A second, small kinesis-local process runs just for this test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from consumers.verify import render, verify
from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import Env, leases, running_consumer, wait_drained

KL_OFFSET = 257  # kinesis-local listens on 14567 + this (plain HTTP) and +1000 (TLS)


@pytest.fixture(scope="module")
def kinesis_local(settings: Settings) -> Iterator[Settings]:
    st = settings.stack.model_copy(
        update={
            "kinesis_emulator": "kinesis-local",
            "port_offset": KL_OFFSET,
            "dir": Path(settings.stack.dir) / "kinesis-local",
        }
    )
    kl = settings.model_copy(update={"stack": st})
    stack = Stack(kl)
    part = stack.start_kinesis()
    try:
        yield settings.model_copy(
            update={"aws": settings.aws.model_copy(update={"kinesis_endpoint_url": part.endpoint})}
        )
    finally:
        stack.procs.stop("kinesis", timeout_s=3)


def _wait_active(client: object, stream: str) -> None:
    for _ in range(100):
        desc = client.describe_stream_summary(StreamName=stream)  # type: ignore[attr-defined]
        if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise AssertionError("stream not ACTIVE")


def _open_shards(client: object, stream: str) -> list[dict[str, object]]:
    shards = client.list_shards(StreamName=stream)["Shards"]  # type: ignore[attr-defined]
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


async def test_split_and_merge_during_ingest(env: Env, kinesis_local: Settings) -> None:
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
    client = env.feed.kinesis
    env.feed.put(env.feed.load(users=40, movies=40, ratings=300))
    async with running_consumer(s):
        env.feed.put(env.feed.activity(400))
        first = _open_shards(client, env.stream)[0]
        hashes = first["HashKeyRange"]
        middle = (int(hashes["StartingHashKey"]) + int(hashes["EndingHashKey"])) // 2  # type: ignore[index]
        client.split_shard(
            StreamName=env.stream, ShardToSplit=first["ShardId"], NewStartingHashKey=str(middle)
        )
        _wait_active(client, env.stream)
        env.feed.put(env.feed.activity(400))
        shards = sorted(
            _open_shards(client, env.stream), key=lambda x: int(x["HashKeyRange"]["StartingHashKey"])
        )  # type: ignore[index]
        client.merge_shards(
            StreamName=env.stream,
            ShardToMerge=shards[0]["ShardId"],
            AdjacentShardToMerge=shards[1]["ShardId"],
        )
        _wait_active(client, env.stream)
        env.feed.put(env.feed.activity(400))
        await wait_drained(env, timeout_s=240)
    all_leases = leases(s, env.lease_table)
    assert len(all_leases) >= 5  # 2 original + 2 split children + 1 merge child
    assert sum(le.ended for le in all_leases) >= 2
    drift = await verify(s)
    assert drift.total == 0, render(drift)
