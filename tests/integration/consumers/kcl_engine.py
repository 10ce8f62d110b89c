"""Helpers of the KCL engine's integration tests: a real `gorse-cdc consume --engine kcl`
process (the MultiLangDaemon and its per-shard processors) and what its JSON log tells."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import boto3
import orjson

from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import Env, consumer_process

KCL_STOP_S = 60.0


def kcl_process(env: Env, worker_id: str, log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    return consumer_process(env, worker_id, log, engine="kcl", **extra_env)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as ECS stops a task: the daemon shuts its processors down gracefully."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(KCL_STOP_S)
    finally:
        if proc.poll() is None:
            proc.kill()


def log_events(log: Path, msg: str) -> list[dict[str, object]]:
    """The processors' JSON log lines with this message (the daemon echoes them)."""
    out = []
    for line in log.read_bytes().splitlines():
        start = line.find(b"{")
        if start < 0 or msg.encode() not in line:
            continue
        try:
            doc = orjson.loads(line[start:])
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("msg") == msg:
            out.append(doc)
    return out


def next_sequence(settings: Settings, stream: str, shard: str, after: str | None) -> str | None:
    """The sequence number of the record right after ``after`` (the first when None)."""
    k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    kw = (
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
        if after
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    it = k.get_shard_iterator(StreamName=stream, ShardId=shard, **kw)["ShardIterator"]
    records = k.get_records(ShardIterator=it, Limit=1)["Records"]
    return records[0]["SequenceNumber"] if records else None


def records_between(settings: Settings, stream: str, shard: str, after: str | None, upto: str) -> int:
    """How many records the shard holds after ``after`` up to ``upto`` included."""
    k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    kw = (
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
        if after
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    it = k.get_shard_iterator(StreamName=stream, ShardId=shard, **kw)["ShardIterator"]
    n = 0
    while it:
        resp = k.get_records(ShardIterator=it, Limit=10_000)
        for r in resp["Records"]:
            if int(r["SequenceNumber"]) > int(upto):
                return n
            n += 1
        if not resp["Records"] and not resp.get("MillisBehindLatest"):
            return n
        it = resp.get("NextShardIterator")
    return n


async def started(proc: subprocess.Popen[bytes], log: Path, shards: int, timeout_s: float = 120.0) -> None:
    """Until the processors of ``shards`` shards applied their first batch; fails at once if
    the daemon exited (with its log's tail)."""
    deadline = time.monotonic() + timeout_s
    while len({e["shard"] for e in log_events(log, "KCL first batch")}) < shards:
        if proc.poll() is not None:
            raise AssertionError(f"the KCL engine exited ({proc.returncode}):\n{tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the KCL engine read nothing in {timeout_s} s:\n{tail(log)}")
        await asyncio.sleep(0.5)


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:]
