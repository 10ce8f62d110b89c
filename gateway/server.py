"""Runs the app: HTTPS (or plain HTTP behind a TLS-terminating load balancer) until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import make_app
from gateway.tls import ensure_local_certs, server_context
from gateway.wiring import key_store, open_aws, open_parts
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    g = settings.gateway
    if g.tls_cert and g.tls_key:
        return server_context(g.tls_cert, g.tls_key)
    if settings.local:
        directory = settings.stack.dir / "tls"
    elif g.tls_self_signed:  # the hop from the load balancer, which terminates the public TLS
        directory = Path(tempfile.mkdtemp(prefix="gorse-cdc-tls-"))
    else:
        raise FatalError(
            "gateway.tls_cert and gateway.tls_key (or tls_self_signed) must be set when local = false"
        )
    hosts = sorted({g.host, "127.0.0.1", "localhost"}, key=lambda h: h != g.host)
    _, cert, key = ensure_local_certs(directory, hosts)
    return server_context(cert, key)


def status_source(settings: Settings) -> Callable[[], Awaitable[dict[str, Any]]] | None:
    """The status page's document, read from the status exporter (gorse-cdc status
    --serve-metrics): the gateway itself reads no lease table, stream or bucket for it."""
    url = settings.gateway.status_url
    if url is None and settings.local:
        url = f"http://{settings.stack.host}:{settings.stack.port('status_exporter')}/status.json"
    if url is None:
        return None

    async def fetch() -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            if resp.status != 200:
                raise aiohttp.ClientError(f"the status exporter answered {resp.status}")
            doc: dict[str, Any] = await resp.json()
            return doc

    return fetch


async def serve(settings: Settings, port: int, *, tls: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    context = ssl_context(settings) if tls else None
    async with open_aws(settings, "dynamodb") as (dynamodb,):
        await key_store(settings, dynamodb).ensure_table()
    async with open_parts(settings) as parts:
        parts.status = status_source(settings)
        runner = web.AppRunner(make_app(parts), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.gateway.host, port, ssl_context=context, backlog=1024)
        await site.start()
        scheme = "https" if context else "http"
        log.info("gateway serving on %s://%s:%d", scheme, settings.gateway.host, port)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
    return 0
