"""The adaptive limit against the real Gorse, behind a fault-injecting proxy that makes every
answer slow for a while (as a gorse-in-one busy ranking after a restart does): the client lets
fewer requests into Gorse, none fails or times out, and the limit grows back once Gorse is quick."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from gorse_cdc.gorse import Feedback, GorseClient
from gorse_cdc.settings import Settings
from tests.integration.http_proxy import ForwardingProxy, serving

CALLERS = 16


@pytest.fixture
async def proxy(settings: Settings, stack: object) -> AsyncIterator[tuple[ForwardingProxy, str]]:
    async with serving(settings.gorse_url) as served:
        yield served


async def test_a_slow_gorse_gets_fewer_requests_and_none_fails(
    proxy: tuple[ForwardingProxy, str], settings: Settings
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
