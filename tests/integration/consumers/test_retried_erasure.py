"""The erasure guard across a retried plan, on the real Gorse (behind a fault-injecting proxy)
and the real erasure log (DynamoDB on moto): attempt 1 writes a user's play; the user is erased
while that PUT is in Gorse's hands; the delete that follows gets a 503 once, so the plan fails
and is retried. The retry refuses the user's events, and must still delete the user again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

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
from tests.integration.http_proxy import ForwardingProxy, serving


@pytest.fixture
async def proxy(settings: Settings, stack: object) -> AsyncIterator[tuple[ForwardingProxy, str]]:
    async with serving(settings.gorse_url) as served:
        yield served


async def test_a_retried_plan_deletes_again_a_user_erased_during_its_first_attempt(
    proxy: tuple[ForwardingProxy, str], settings: Settings
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
