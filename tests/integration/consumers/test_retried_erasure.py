"""The erasure guard across a retried plan, on the real Gorse (behind a fault-injecting proxy)
and the real erasure log (DynamoDB on moto): attempt 1 writes a user's play; the user is erased
while that PUT is in Gorse's hands; the delete that follows gets a 503 once, so the plan fails
and is retried. The retry refuses the user's events, and must still delete the user again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from consumers.coalesce import WritePlan
from consumers.metrics import Metrics
from consumers.sink.erasures import DynamoErasureLog
from consumers.sink.gorse_sink import GorseSink
from consumers.wiring import build_mapper, open_clients
from gorse_cdc.errors import GorseRetriableError
from gorse_cdc.gorse import Feedback, GorseClient
from gorse_cdc.settings import Settings


class FaultProxy:
    """Forwards to Gorse. ``before_forward(request)`` may answer instead (a fault) or wait."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.before_forward: Callable[[web.Request], Awaitable[web.Response | None]] | None = None
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.before_forward is not None:
            answer = await self.before_forward(request)
            if answer is not None:
                return answer
        assert self.session is not None
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            data=body,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)


@pytest.fixture
async def proxy(settings: Settings, stack: object) -> AsyncIterator[tuple[FaultProxy, str]]:
    p = FaultProxy(settings.gorse_url)
    p.session = aiohttp.ClientSession()
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
        await p.session.close()


async def test_a_retried_plan_deletes_again_a_user_erased_during_its_first_attempt(
    proxy: tuple[FaultProxy, str], settings: Settings
) -> None:
    p, url = proxy
    user = f"erased-{uuid.uuid4().hex[:10]}"
    key = settings.gorse.api_key.get_secret_value() or None
    table = f"erasures-{uuid.uuid4().hex[:8]}"

    async with contextlib.AsyncExitStack() as stack, GorseClient(url, key, timeout_s=10) as through_proxy:
        clients = await open_clients(stack, settings, Metrics())
        log = DynamoErasureLog(clients.dynamodb, table)
        direct = await stack.enter_async_context(GorseClient.from_settings(settings))

        async def erase_meanwhile_then_fail_the_delete(request: web.Request) -> web.Response | None:
            if request.method == "PUT" and request.path == "/api/feedback":
                # the DMS consumer erases the user while this PUT is on its way to Gorse
                await log.record([user])
                await direct.delete_user(user)
                return None
            if request.method == "DELETE" and request.path == f"/api/user/{user}":
                p.before_forward = None  # once
                return web.Response(status=503, text="injected: Gorse busy")
            return None

        p.before_forward = erase_meanwhile_then_fail_the_delete
        sink = GorseSink(through_proxy, build_mapper(settings), concurrency=4, erasures=log)
        plan = WritePlan(put_events={("play", user, "m1"): Feedback("play", user, "m1", 1.0)})
        with pytest.raises(GorseRetriableError):
            await sink.write(plan)  # attempt 1: the play is in Gorse, the user with it
        assert await direct.get_user(user) is not None, "the fault did not happen: nothing tested"
        await sink.write(plan)  # the retry, as the pipeline runs it
        assert sink.refused_events == 1
        assert await direct.get_user(user) is None, "an erased user came back through a retried plan"
        assert await direct.user_feedback(user) == []
        await clients.dynamodb.delete_table(TableName=table)
        await asyncio.sleep(0)
