"""`gorse-cdc status` and the status page on the real stack: a blocked pipeline (a wrong Gorse
key, as in a rotation gone wrong), a stalled shard (Gorse hanging) and a growing dead-letter
store each show within one refresh of being provoked; the page (gateway /status, admin key, in
headless Chromium) shows the same, fed by the status exporter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
from pydantic import SecretStr

from entrypoints.stack.install import ensure_chromium
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings
from gorse_cdc.status.model import Readings, Severity, assess
from gorse_cdc.status.readers import StatusReader, StatusSources
from tests.integration.consumers.conftest import Env, env, running_consumer  # noqa: F401 (fixture)
from tests.integration.gateway.browser import chromium
from tests.integration.gateway.conftest import Gateway, free_port

ROOT = Path(__file__).resolve().parents[3]


def with_(settings: Settings, **sections: dict[str, object]) -> Settings:
    return settings.model_copy(
        update={name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()}
    )


async def until_ready_says(
    port: int, check: Callable[[dict[str, object]], bool], timeout_s: float = 30
) -> None:
    """Wait until the consumer itself reports the condition (its /readyz): from then on, one
    status read must show it."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, object] = {}
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, ValueError):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    last = await resp.json()
                    if check(last):
                        return
            assert time.monotonic() < deadline, f"the consumer never reported the condition: {last}"
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def hanging_server() -> AsyncIterator[str]:
    """Accepts connections and never answers: a Gorse that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()


def exporter(
    settings: Settings, env_: Env, port: int, consumer_port: int, log: Path
) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "GORSE_CDC_KINESIS__STREAM_NAME": env_.stream,
        "GORSE_CDC_LEASES__TABLE": env_.lease_table,
        "GORSE_CDC_DEAD_LETTERS__S3_PREFIX": f"{settings.dead_letters.s3_prefix}/{env_.stream}",
        "GORSE_CDC_GATEWAY__EVENTS_STREAM": f"{env_.stream}-no-events",
    }
    argv = [sys.executable, "-m", "entrypoints.cli", "status", "--serve-metrics", str(port), "--every", "2"]
    argv += ["--metrics", f"http://127.0.0.1:{consumer_port}"]
    return subprocess.Popen(argv, env=environ, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


async def one_read(reader: StatusReader) -> Readings:
    return await reader.read()


def rows(r: Readings) -> list[tuple[str, str | None, bool]]:
    return [(row.shard, row.blocked, row.stalled) for s in r.streams for row in s.shards]


async def test_blocked_stalled_and_dead_letters_show_within_one_refresh(
    env: Env,  # noqa: F811
    tmp_path: Path,
) -> None:
    s = env.settings
    env.feed.put(env.feed.load(users=10, movies=10, ratings=40))
    port = free_port()
    mine = with_(s, dead_letters={"s3_prefix": f"{s.dead_letters.s3_prefix}/{env.stream}"})
    sources = StatusSources(
        metrics_urls=[f"http://127.0.0.1:{port}"], streams=[(env.stream, env.lease_table)]
    )

    # 1. a wrong Gorse key: BLOCKED (auth) on every shard, exit code 1
    wrong = with_(s, gorse={"api_key": SecretStr("rotated-wrong-key")})
    async with StatusReader(mine, sources, first_sample_s=0) as reader:
        async with running_consumer(wrong, metrics_port=port):
            await until_ready_says(port, lambda r: r.get("blocked") == "auth")
            r = await one_read(reader)
            v = assess(r)
            assert rows(r) and all(blocked == "auth" for _, blocked, _ in rows(r)), rows(r)
            assert "PipelineBlocked" in [f.what for f in v.findings] and v.exit_code == 1

        # 2. Gorse hangs: the shard's batch does not apply for stall_after_s -> STALLED
        async with hanging_server() as url:
            hung = with_(
                s, gorse={"url": url, "urls": [], "timeout_s": 20.0}, consumer={"stall_after_s": 2.0}
            )
            async with running_consumer(hung, metrics_port=port):
                env.feed.put(env.feed.activity(20))
                await until_ready_says(port, lambda r: bool(r.get("stalled")), timeout_s=40)
                r = await one_read(reader)
                assert any(stalled for _, _, stalled in rows(r)), rows(r)
                assert "ShardStalled" in [f.what for f in assess(r).findings]
                assert assess(r).severity is Severity.PAGE

        # 3. records Gorse refuses for good: the dead-letter store grows
        before = (await one_read(reader)).dead_letters
        assert before is not None
        async with running_consumer(s, metrics_port=port):
            env.feed.put([b"{not json " + str(i).encode() for i in range(5)])
            await until_metric(port, "gorse_cdc_records_dead_lettered_total", before.count + 5)
            r = await one_read(reader)
        assert r.dead_letters is not None and r.dead_letters.count >= before.count + 5, r.dead_letters
        assert r.dead_letters.by_reason and "DeadLettersStored" in [f.what for f in assess(r).findings]


async def until_metric(port: int, name: str, at_least: float, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                total = sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(name))
                if total >= at_least:
                    return
            await asyncio.sleep(0.3)
    raise AssertionError(f"{name} < {at_least}")


async def test_the_status_page_shows_a_blocked_pipeline_and_dead_letters(
    env: Env,  # noqa: F811
    settings: Settings,
    tmp_path: Path,
) -> None:
    s = env.settings
    env.feed.put(env.feed.load(users=10, movies=10, ratings=40))
    env.feed.put([b"{not json " + str(i).encode() for i in range(3)])
    consumer_port, exporter_port = free_port(), free_port()
    suffix = uuid.uuid4().hex[:8]
    events = f"st-events-{suffix}"
    ensure_stream(settings, events, 1)
    gw_env = {
        **os.environ,
        "GORSE_CDC_GATEWAY__KEYS_TABLE": f"st-keys-{suffix}",
        "GORSE_CDC_GATEWAY__EVENTS_STREAM": events,
        "GORSE_CDC_GATEWAY__STATUS_URL": f"http://127.0.0.1:{exporter_port}/status.json",
    }
    gw = Gateway(settings, gw_env, free_port(), tmp_path / "gateway.log")
    gw.start()
    proc = exporter(s, env, exporter_port, consumer_port, tmp_path / "exporter.log")
    try:
        admin = gw.create_key("admin", "admin")["key"]
        async with running_consumer(s, metrics_port=consumer_port):  # the right key: dead letters
            await until_metric(consumer_port, "gorse_cdc_records_dead_lettered_total", 3)
        wrong = with_(s, gorse={"api_key": SecretStr("rotated-wrong-key")})
        async with running_consumer(wrong, metrics_port=consumer_port):
            env.feed.put(env.feed.activity(10))
            await until_ready_says(consumer_port, lambda r: r.get("blocked") == "auth")
            async with chromium(ensure_chromium(), f"{gw.url}/status#key={admin}") as page:
                # one exporter read (2 s) + one page refresh (5 s)
                await page.wait_for("document.querySelector('#shards [data-state=page]') !== null", 12)
                text = await page.eval("document.body.innerText")
                assert "BLOCKED (auth)" in text and "PipelineBlocked" in text and "NEEDS A PERSON" in text
                await page.wait_for(
                    "/[1-9][0-9]* letters/.test(document.getElementById('dead-letters').innerText)", 5
                )
                await page.wait_for("document.body.dataset.at !== undefined", 5)
                await page.send(  # the whole page, charts included
                    "Emulation.setDeviceMetricsOverride",
                    width=1280,
                    height=1180,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                await asyncio.sleep(0.3)
                shot = tmp_path / "status-page.png"
                await page.screenshot(shot)
        assert shot.stat().st_size > 10_000
        if target := os.environ.get("GORSE_CDC_STATUS_SCREENSHOT"):
            shutil.copy(shot, target)
        # the document behind the page is for admin keys only
        reader_key = gw.create_key("reader", "reader")["key"]
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{gw.url}/v1/status", headers={"X-API-Key": reader_key}, ssl=gw.ssl()
            ) as resp:
                assert resp.status == 403
            async with http.get(f"{gw.url}/v1/status", headers={"X-API-Key": admin}, ssl=gw.ssl()) as resp:
                doc = orjson.loads(await resp.read())
                assert resp.status == 200 and doc["verdict"]["exit_code"] == 1 and doc["history"]
    finally:
        proc.terminate()
        proc.wait(10)
        gw.stop()
        with contextlib.suppress(Exception):
            import boto3

            boto3.client("kinesis", **settings.aws_client_kwargs("kinesis")).delete_stream(StreamName=events)


def free_consumer_port(settings: Settings) -> int:
    """A port the stack's Prometheus scrapes (consumer.metrics_port and the next 9)."""
    first = settings.consumer.metrics_port
    for port in range(first, first + 10):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise AssertionError("every consumer metrics port is taken")


async def test_the_stacks_prometheus_evaluates_the_rules_on_a_real_consumer(
    env: Env,  # noqa: F811
    settings: Settings,
) -> None:
    """The alert rules run on what a real consumer exports: a wrong key makes PipelineBlocked
    pending (it fires after 1 min) in the stack's own Prometheus within two scrapes."""
    from entrypoints.stack import prometheus

    s = env.settings
    env.feed.put(env.feed.load(users=5, movies=5, ratings=10))
    port = free_consumer_port(settings)  # the stack's ports (the env's consumer has none)
    wrong = with_(s, gorse={"api_key": SecretStr("rotated-wrong-key")})
    async with running_consumer(wrong, metrics_port=port), aiohttp.ClientSession() as http:
        await until_ready_says(port, lambda r: r.get("blocked") == "auth", timeout_s=60)
        deadline = time.monotonic() + 45  # two scrapes (5 s) + one evaluation, on a busy machine
        while True:
            async with http.get(prometheus.url(s) + "/api/v1/alerts") as resp:
                alerts = (await resp.json())["data"]["alerts"]
            mine = [
                a
                for a in alerts
                if a["labels"]["alertname"] == "PipelineBlocked"
                and a["labels"].get("instance") == f"127.0.0.1:{port}"
            ]
            if mine:
                assert mine[0]["state"] in ("pending", "firing")
                assert mine[0]["annotations"]["runbook"] == "docs/operations.md#pipelineblocked"
                return
            assert time.monotonic() < deadline, "PipelineBlocked never became pending"
            await asyncio.sleep(1)
