"""A key rotation gone wrong, on the real stack: the consumer started with a wrong Gorse API key
holds progress and says why (readyz 503 "auth", a metric, a log line), dead-letters nothing and
checkpoints nothing; restarted with the right key it applies everything: Gorse equals the
database."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from pydantic import SecretStr

from consumers.metrics import Metrics
from consumers.verify import render, verify
from tests.integration.consumers.conftest import Env, leases, running_consumer, wait_drained


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_wrong_key_then_the_right_one_loses_nothing_and_dead_letters_nothing(env: Env) -> None:
    env.feed.put(env.feed.load(users=40, movies=50, ratings=400))
    env.feed.put(env.feed.activity(600))
    port = _free_port()
    wrong = env.settings.model_copy(
        update={"gorse": env.settings.gorse.model_copy(update={"api_key": SecretStr("rotated-wrong-key")})}
    )
    metrics = Metrics()
    async with running_consumer(wrong, metrics_port=port, metrics=metrics), aiohttp.ClientSession() as http:
        ready: dict[str, object] = {}
        for _ in range(150):
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    ready = {"status": resp.status, **(await resp.json())}
            except aiohttp.ClientConnectionError:
                pass  # the endpoint starts once the lease table is there
            if ready.get("blocked") == "auth":
                break
            await asyncio.sleep(0.2)
        assert ready["status"] == 503 and ready["blocked"] == "auth", ready
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
        assert "gorse_cdc_pipeline_blocked 1.0" in text
        assert 'gorse_cdc_pipeline_errors_total{reason="auth"}' in text
        assert "rotated-wrong-key" not in text
        await asyncio.sleep(3)  # a few more retries: still nothing moves
        assert metrics.records_dead_lettered._metrics == {}  # type: ignore[attr-defined]
        assert all(le.checkpoint == "TRIM_HORIZON" for le in leases(env.settings, env.lease_table))

    async with running_consumer(env.settings):  # the right key
        await wait_drained(env)
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)
