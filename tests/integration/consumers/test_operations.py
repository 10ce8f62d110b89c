"""The operations surface of a running consumer on the real stack: /healthz, /readyz (tracks
Gorse going away and coming back), /metrics; and the SQS dead-letter store with its re-drive."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import boto3
import orjson

from consumers.replay.runner import Replay
from entrypoints.stack.components import Stack
from tests.integration.consumers.conftest import Env, running_consumer, wait_drained


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_ready_and_metrics_endpoints(env: Env) -> None:
    port = free_port()
    env.feed.put(env.feed.load(users=10, movies=10, ratings=50))
    base = f"http://127.0.0.1:{port}"
    stack = Stack(env.settings)
    async with running_consumer(env.settings, metrics_port=port), aiohttp.ClientSession() as http:
        await wait_drained(env)
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
        async with http.get(base + "/readyz") as r:
            assert r.status == 200, await r.text()
        async with http.get(base + "/metrics") as r:
            text = await r.text()
        applied = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gorse_cdc_records_applied_total{")
        ]
        assert sum(applied) >= 70  # 10 users + 10 movies + 50 ratings
        assert "gorse_cdc_leases_held" in text and "gorse_cdc_gorse_request_seconds" in text
        stack.procs.stop("gorse")
        try:
            deadline = time.monotonic() + 20
            status = 200
            while status == 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                async with http.get(base + "/readyz") as r:
                    status = r.status
            assert status == 503  # not ready while Gorse is away ...
            async with http.get(base + "/healthz") as r:
                assert r.status == 200  # ... but alive: the platform must not kill it
        finally:
            stack.start_gorse()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            async with http.get(base + "/readyz") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.5)
        assert r.status == 200


async def test_sqs_dead_letters_and_redrive(env: Env) -> None:
    s = env.settings.model_copy(
        update={
            "dead_letters": env.settings.dead_letters.model_copy(
                update={"kind": "sqs", "sqs_queue": f"dl-{env.stream}"}
            )
        }
    )
    sqs = boto3.client("sqs", **s.aws_client_kwargs("sqs"))
    url = sqs.create_queue(QueueName=s.dead_letters.sqs_queue)["QueueUrl"]
    bad = [b"{broken " + str(i).encode() for i in range(24)]
    bad.append(b"{broken, and too large for one SQS message " + b"x" * 400_000)
    env.feed.put(env.feed.load(users=5, movies=5, ratings=20))
    env.feed.put(bad)
    async with running_consumer(s):
        await wait_drained(env)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert int(attrs["Attributes"]["ApproximateNumberOfMessages"]) == 25
    # re-drive: still undecodable, so every letter goes back with its (new) reason
    summary = await Replay(s, progress=False).dead_letters()
    assert summary.dead_lettered == 25 and summary.redriven == 0
    got = []
    for _ in range(10):
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        got += [orjson.loads(m["Body"]) for m in msgs]
        if len(got) >= 25:
            break
    assert sum("s3_pointer" in g for g in got) == 1  # the large one lives in S3, SQS holds a pointer
    assert sorted(g["raw"] for g in got if "raw" in g) == sorted(b.decode() for b in bad[:24])
    assert all("JSON" in g["reason"] and g["sequence_number"].isdigit() for g in got)
    sqs.delete_queue(QueueUrl=url)


async def test_taking_shards_resets_the_cached_demographics_and_item_values(env: Env) -> None:
    """Cached demographics and item values are safe only while this worker alone writes its
    shards' users: the hook that forgets them when shards are taken must be wired to the
    running sink."""
    from consumers.sink.gorse_sink import GorseSink

    env.feed.put(env.feed.load(users=5, movies=5, ratings=20))
    async with running_consumer(env.settings) as consumer:
        await wait_drained(env)
        hook = consumer.parts.on_shards_taken
        assert getattr(hook, "__func__", None) is GorseSink.shards_taken
        sink = hook.__self__  # type: ignore[attr-defined]
        assert sink.liked._demo and len(sink.cache)  # what was written so far is cached ...
        hook()
        assert not sink.liked._demo and not len(sink.cache)  # ... and forgotten by the hook
