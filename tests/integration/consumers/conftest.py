"""Fixtures of the consumer's integration tests: each test gets its own Kinesis stream and
lease table on the shared real stack, an empty source database and an empty Gorse."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from consumers.leases.lease import SHARD_END, Lease
from consumers.metrics import Metrics
from consumers.service import Consumer
from consumers.verify import verify
from consumers.wiring import open_consumer
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.gorse import GorseClient
from gorse_cdc.mapping.state import Drift
from gorse_cdc.settings import Settings
from tests.integration.consumers.feed import Feed

ITEM_TTL_S = 2.0  # the consumers' item-cache TTL here: genre edits are re-told after it


@dataclass
class Env:
    settings: Settings
    stream: str
    lease_table: str
    feed: Feed


def with_names(settings: Settings, stream: str, lease_table: str, **consumer: object) -> Settings:
    return settings.model_copy(
        update={
            "kinesis": settings.kinesis.model_copy(update={"stream_name": stream}),
            "leases": settings.leases.model_copy(update={"table": lease_table, "failover_ms": 3000}),
            "consumer": settings.consumer.model_copy(
                update={
                    "metrics_port": 0,
                    "idle_pause_ms": 200,
                    "shutdown_timeout_s": 10.0,
                    "item_cache_ttl_s": ITEM_TTL_S,
                    **consumer,
                }
            ),
        }
    )


async def clear_gorse(settings: Settings) -> None:
    async with GorseClient.from_settings(settings) as g:
        users, items = await g.export_users(), await g.export_items()
        sem = asyncio.Semaphore(16)

        async def one(call: object) -> None:
            async with sem:
                await call  # type: ignore[misc]

        await asyncio.gather(*(one(g.delete_user(u.user_id)) for u in users))
        await asyncio.gather(*(one(g.delete_item(i.item_id)) for i in items))
        left = await g.export_feedback()
        await asyncio.gather(*(one(g.delete_feedback(f.user_id, f.item_id)) for f in left))


@pytest.fixture
async def env(settings: Settings, stack: object, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    shards = getattr(request, "param", 2)
    tag = uuid.uuid4().hex[:8]
    stream, table = f"cons-{tag}", f"leases-{tag}"
    s = with_names(settings, stream, table)
    ensure_stream(s, stream, shards)
    feed = Feed(s, stream)
    feed.truncate()
    await clear_gorse(s)
    yield Env(s, stream, table, feed)
    feed.close()
    if os.environ.get("GORSE_CDC_TEST_KEEP_STREAM"):
        (Path("/tmp") / "kept-stream").write_text(stream)
        return
    with contextlib.suppress(Exception):
        boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(StreamName=stream)


def leases(settings: Settings, table: str) -> list[Lease]:
    ddb = boto3.client("dynamodb", **settings.aws_client_kwargs("dynamodb"))
    try:
        items = ddb.scan(TableName=table, ConsistentRead=True).get("Items", [])
    except ddb.exceptions.ResourceNotFoundException:
        return []  # the consumer creates it when it starts
    return [Lease.from_item(i) for i in items]


def drained(settings: Settings, table: str, last_sequence: dict[str, str]) -> bool:
    try:
        by_key = {le.lease_key: le for le in leases(settings, table)}
    except Exception:
        return False
    for shard, seq in last_sequence.items():
        le = by_key.get(shard)
        if le is None:
            return False
        if le.checkpoint != SHARD_END and (not le.checkpoint.isdigit() or int(le.checkpoint) < int(seq)):
            return False
    return True


def stream_tips(settings: Settings, stream: str, after: dict[str, str]) -> dict[str, str]:
    """The last sequence number of every shard now (``after``: known earlier positions to read
    from), including what the consumers put there themselves (liked-labels refresh records)."""
    k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    tips: dict[str, str] = {}
    for shard in k.list_shards(StreamName=stream)["Shards"]:
        sid = shard["ShardId"]
        kw = (
            {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": after[sid]}
            if sid in after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        it = k.get_shard_iterator(StreamName=stream, ShardId=sid, **kw)["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10_000)
            if r["Records"]:
                tips[sid] = r["Records"][-1]["SequenceNumber"]
            if not r["Records"] and not r.get("MillisBehindLatest"):
                break
            it = r.get("NextShardIterator")
    return tips


async def wait_drained(env: Env, timeout_s: float = 180.0) -> None:
    """Every record the feed put, then every record on the stream by then (the consumers'
    own refresh records included), is checkpointed. Liveness only (a generous bound);
    correctness is what the tests assert."""
    deadline = time.monotonic() + timeout_s
    tips = env.feed.last_sequence
    for _ in range(2):
        while not drained(env.settings, env.lease_table, tips):
            if time.monotonic() > deadline:
                raise AssertionError(f"stream not drained: {leases(env.settings, env.lease_table)}")
            await asyncio.sleep(0.3)
        tips = await asyncio.to_thread(stream_tips, env.settings, env.stream, tips)


async def converged(env: Env, within_s: float = ITEM_TTL_S + 8) -> Drift:
    """verify until Gorse equals the database or ``within_s`` passed (the re-tell of genre
    edits lands ITEM_TTL_S after them); drained first. Returns the last drift."""
    await wait_drained(env)
    deadline = time.monotonic() + within_s
    while True:
        drift = await verify(env.settings)
        if drift.total == 0 or time.monotonic() > deadline:
            return drift
        await asyncio.sleep(1.0)
        await wait_drained(env)


@contextlib.asynccontextmanager
async def running_consumer(
    settings: Settings, *, metrics_port: int | None = None, metrics: Metrics | None = None
) -> AsyncIterator[Consumer]:
    stop = asyncio.Event()
    if metrics_port is not None:
        consumer_settings = settings.consumer.model_copy(update={"metrics_port": metrics_port})
        settings = settings.model_copy(update={"consumer": consumer_settings})
    async with open_consumer(settings, metrics) as consumer:
        task = asyncio.create_task(consumer.run(stop))
        try:
            yield consumer
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 30) == 0


def consumer_process(
    env: Env, worker_id: str, log: Path, *, engine: str = "native", **extra_env: str
) -> subprocess.Popen[bytes]:
    """A real `gorse-cdc consume` process; ``engine="kcl"`` runs the KCL MultiLangDaemon and its
    per-shard processors (they take the lease timing from the env's settings)."""
    if engine == "kcl":
        k = env.settings.aws.kinesis_endpoint_url
        engine_env = {
            "GORSE_CDC_LEASES__FAILOVER_MS": str(env.settings.leases.failover_ms),
            "GORSE_CDC_CONSUMER__SHUTDOWN_TIMEOUT_S": "10",
            **({"GORSE_CDC_AWS__KINESIS_ENDPOINT_URL": k} if k else {}),
        }
    else:
        engine_env = {"GORSE_CDC_LEASES__FAILOVER_MS": "3000", "GORSE_CDC_CONSUMER__IDLE_PAUSE_MS": "200"}
    e = {**os.environ, **engine_env, "GORSE_CDC_CONSUMER__ITEM_CACHE_TTL_S": str(ITEM_TTL_S), **extra_env}
    argv = [sys.executable, "-m", "entrypoints.cli", "--json-logs", "consume", "--engine", engine]
    argv += ["--stream", env.stream, "--lease-table", env.lease_table, "--worker-id", worker_id]
    argv += ["--metrics-port", "0"]
    return subprocess.Popen(argv, env=e, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


@pytest.fixture
def tmp_log(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "consumer.log"
