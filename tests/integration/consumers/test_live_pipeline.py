"""The whole live pipeline with the real parts: PostgreSQL -> the local DMS (logical
replication, running) -> Kinesis -> the consumer (running) -> Gorse, under OTT activity.
Once the stream drains, `verify` finds Gorse equal to the database, labels included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid

import boto3
import psycopg

from consumers.verify import render, verify
from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.dms.runner import run_dms
from producers.synthetic import generate
from producers.synthetic_model import GeneratorConfig
from tests.integration.consumers.conftest import running_consumer
from tests.integration.producers.conftest import drop_slot
from tests.integration.replay.conftest import replay_settings

CHANGES = int(os.environ.get("GORSE_CDC_TEST_LIVE_CHANGES", "10000"))


async def test_live_dms_and_consumer_under_activity(settings: Settings, stack: object) -> None:
    s = replay_settings(settings, "live" + uuid.uuid4().hex[:6])
    ensure_stream(s)
    ensure_bucket(s)
    Stack(s).reset_gorse()
    with psycopg.connect(s.source_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ratings; DELETE FROM movies; DELETE FROM users;")
    generate(s, GeneratorConfig(users=300, movies=200, ratings=5000, seed=21))
    stop = threading.Event()
    dms = threading.Thread(target=lambda: run_dms(s, mode="full-load-and-cdc", stop=stop), daemon=True)
    dms.start()
    try:
        async with running_consumer(s):
            summary = await asyncio.to_thread(run_activity, s, changes=CHANGES, rate=2000, seed=22)
            assert summary.events == CHANGES
            deadline = time.monotonic() + 240
            while (drift := await verify(s)).total:
                assert time.monotonic() < deadline, render(drift)
                await asyncio.sleep(1.0)
    finally:
        stop.set()
        dms.join(60)
        drop_slot(s)
        with contextlib.suppress(Exception):
            boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(
                StreamName=s.kinesis.stream_name
            )
    assert (await verify(s)).total == 0
