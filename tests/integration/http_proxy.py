"""A fault-injecting HTTP proxy in front of a real server (Gorse): forwards every request,
optionally answers in its place (``before_forward``) or after a delay (``delay_s``), and counts
the requests in flight at the server's side. Used by the tests that need Gorse slow or failing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web


class ForwardingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.delay_s = 0.0
        # may answer instead of the server (a fault), or wait; None: forward the request
        self.before_forward: Callable[[web.Request], Awaitable[web.Response | None]] | None = None
        self.in_flight = 0
        self.peak = 0
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.before_forward is not None:
            answer = await self.before_forward(request)
            if answer is not None:
                return answer
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            assert self.session is not None
            async with self.session.request(
                request.method,
                self.upstream + request.path_qs,
                data=body,
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as r:
                return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def serving(upstream: str) -> AsyncIterator[tuple[ForwardingProxy, str]]:
    """The proxy listening on a free loopback port, and its URL."""
    p = ForwardingProxy(upstream)
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
