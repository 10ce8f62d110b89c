"""An erased user stays erased while their app keeps posting plays: the user's delete comes on
the DMS stream (its own real consumer), the plays on the gateway's events stream (another real
consumer), both into the real Gorse, with the erasure log in DynamoDB (moto) between them."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3

from entrypoints.stack.resources import ensure_stream
from gorse_cdc.dms.record import DmsRecord, encode_record
from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.models import Feedback
from gorse_cdc.settings import Settings
from tests.integration.gateway.conftest import Gateway, events_consumer
from tests.integration.gateway.test_events import post, wait_for


def dms_delete_user(user_id: int) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    rec = DmsRecord(
        "data", "delete", "public", "users", {"user_id": user_id}, None,
        timestamp=now, transaction_id=random.randrange(10**6), transaction_record_id=1,
        commit_timestamp=now, partition_key_type="attribute-name",
    )  # fmt: skip
    return encode_record(rec)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def test_plays_posted_around_an_erasure_never_bring_the_user_back(
    gateway: Gateway, settings: Settings, tmp_path: Path
) -> None:
    user_id = 900_000_000 + random.randrange(10**8)
    user = str(user_id)
    dms_stream = f"gw-dms-{uuid.uuid4().hex[:8]}"
    ensure_stream(settings, dms_stream, 1)
    events_log, dms_log = tmp_path / "events-consumer.log", tmp_path / "dms-consumer.log"
    events, dms = events_consumer(gateway, events_log), events_consumer(gateway, dms_log, dms_stream)
    key = gateway.keys["ingest"]["key"]
    try:
        async with GorseClient.from_settings(settings) as gorse:
            await gorse.put_feedback([Feedback("like", user, "m1", 5.0)])  # the user, as DMS wrote it
            assert await post(gateway, [{"user": user, "item": "warm", "type": "play"}], key) == 202
            await wait_for(gorse, user, {("play", "warm")}, timeout_s=60)  # both paths are live

            stop_posting = asyncio.Event()
            posted = 0

            async def app() -> None:  # the user's TV keeps posting plays, erasure or not
                nonlocal posted
                while not stop_posting.is_set():
                    batch = [{"user": user, "item": f"p{posted}-{j}", "type": "play"} for j in range(3)]
                    assert await post(gateway, batch, key) == 202
                    posted += 1
                    await asyncio.sleep(0.05)

            task = asyncio.create_task(app())
            await asyncio.sleep(1.5)
            kinesis = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
            kinesis.put_record(StreamName=dms_stream, Data=dms_delete_user(user_id), PartitionKey=user)
            deadline = time.monotonic() + 60
            while await gorse.get_user(user) is not None:  # the DMS consumer erased the user
                assert time.monotonic() < deadline, "the DMS consumer did not delete the user in 60 s"
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)  # plays keep coming after the erasure
            stop_posting.set()
            await task
            # a sentinel behind every play on the one-shard events stream: once it is in Gorse,
            # every play posted before it was applied (or refused)
            sentinel = f"sentinel-{user}"
            assert await post(gateway, [{"user": sentinel, "item": "s", "type": "play"}], key) == 202
            await wait_for(gorse, sentinel, {("play", "s")}, timeout_s=90)

            assert await gorse.get_user(user) is None, "an erased user came back through their plays"
            assert await gorse.user_feedback(user) == []
            assert posted > 20
        refused = [line for line in events_log.read_text().splitlines() if "events_of_erased_users" in line]
        assert refused, "the events consumer never refused a play: the test raced nothing"
        assert user not in events_log.read_text()  # the erased user's id is never logged
    finally:
        stop(events)
        stop(dms)
