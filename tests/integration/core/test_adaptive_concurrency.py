"""The adaptive limit against the real Gorse, behind a fault-injecting proxy that makes every
answer slow for a while (as a gorse-in-one busy ranking after a restart does): the client lets
fewer requests into Gorse, none fails or times out, and the limit grows back once Gorse is quick."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gorse_cdc.gorse import Feedback, GorseClient
from gorse_cdc.settings import Settings

CALLERS = 16


class SlowProxy:
    """Forwards to Gorse; while ``delay_s`` > 0 each answer waits that long. Counts requests in
    flight at Gorse's side of the proxy."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.delay_s = 0.0
        self.in_flight = 0
        self.peak = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            async with (
                aiohttp.ClientSession() as s,
                s.request(
                    request.method,
                    self.upstream + request.path_qs,
                    data=await request.read(),
                    headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                ) as r,
            ):
                body = await r.read()
                return web.Response(status=r.status, body=body, content_type=r.content_type)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def proxy(settings: Settings, stack: object) -> AsyncIterator[tuple[SlowProxy, str]]:
    p = SlowProxy(settings.gorse_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", p.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield p, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_slow_gorse_gets_fewer_requests_and_none_fails(
    proxy: tuple[SlowProxy, str], settings: Settings
) -> None:
    p, url = proxy
    tag = uuid.uuid4().hex[:6]
    key = settings.gorse.api_key.get_secret_value()
    client = GorseClient(url, key, max_connections=CALLERS, adaptive=True, slow_call_s=0.3, timeout_s=5)
    assert client.limit is not None
    errors: list[str] = []

    async def callers(seconds: float) -> int:
        end, done = time.monotonic() + seconds, 0

        async def one(w: int) -> None:
            nonlocal done
            n = 0
            while time.monotonic() < end:
                n += 1
                try:
                    await client.put_feedback([Feedback("like", f"{tag}-u{w}", f"{tag}-i{n}", 1.0)])
                    done += 1
                except Exception as e:  # any failure fails the test below
                    errors.append(repr(e))

        await asyncio.gather(*(one(w) for w in range(CALLERS)))
        return done

    async with client:
        assert await callers(1.0) > 0 and p.peak > CALLERS // 2  # quick: all callers get in
        p.delay_s = 1.0  # Gorse busy: every answer takes 1 s
        slow = asyncio.create_task(callers(6.0))
        await asyncio.sleep(3.5)  # 16 -> 8 -> 4 -> 2 at one cut per second of slow answers
        p.peak = p.in_flight
        await slow
        slow_limit, slow_peak = client.limit.limit, p.peak
        p.delay_s = 0.0
        await callers(3.0)
        assert errors == []  # nothing failed or timed out (5 s) though 16 callers met 1 s answers
        assert slow_limit <= 2.0, slow_limit  # cut from 16 on the slow answers
        assert slow_peak <= 2, slow_peak  # Gorse saw no more than that at once
        assert client.limit.limit == CALLERS  # and grown back once Gorse was quick
    try:
        async with GorseClient.from_settings(settings) as g:
            for w in range(CALLERS):
                await g.delete_user(f"{tag}-u{w}")
    except Exception:  # cleanup only
        pass
