"""Runs the app in ``gateway.workers`` worker processes on one port, HTTPS (or plain HTTP behind
a TLS-terminating load balancer), under gunicorn's arbiter with aiohttp's GunicornWebWorker.

The arbiter (this process) makes what the workers share before it forks them: the listening
socket, the TLS certificate, the key table's existence, the token buckets of keys and of failed
authentications (``SharedBuckets``: one limit across the workers), the items users just acted
on (``SharedActions``: a row read on any worker leaves out what another just took), and the
folder of the Prometheus multiprocess files (/metrics sums every worker). Each worker opens its
own clients (Gorse, DynamoDB, Kinesis) and caches. The arbiter replaces a worker that dies (or
whose loop is stuck past ``timeout``). SIGTERM closes the listening socket and lets every worker
finish its requests for up to ``gateway.shutdown_timeout_s``, then all exit; SIGINT (Ctrl-C)
stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.worker import GunicornWebWorker
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from gateway.app import make_app
from gateway.metrics import use_multiprocess_values
from gateway.sharedacts import SharedActions
from gateway.sharedbuckets import SharedBuckets
from gateway.tls import ensure_local_certs, server_context
from gateway.wiring import key_store, open_aws, open_parts
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


def certificate(settings: Settings) -> tuple[Path, Path]:
    """(certificate chain, key): the configured ones, or one made by the local stack's CA (or
    self-signed, for the hop from the load balancer, which terminates the public TLS)."""
    g = settings.gateway
    if g.tls_cert and g.tls_key:
        return g.tls_cert, g.tls_key
    if settings.local:
        directory = settings.stack.dir / "tls"
    elif g.tls_self_signed:
        directory = Path(tempfile.mkdtemp(prefix="gorse-cdc-tls-"))
    else:
        raise FatalError(
            "gateway.tls_cert and gateway.tls_key (or tls_self_signed) must be set when local = false"
        )
    hosts = sorted({g.host, "127.0.0.1", "localhost"}, key=lambda h: h != g.host)
    _, cert, key = ensure_local_certs(directory, hosts)
    return cert, key


def ssl_context(settings: Settings) -> ssl.SSLContext:
    return server_context(*certificate(settings))


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


class GatewayWorker(GunicornWebWorker):
    """aiohttp's gunicorn worker with the gateway's TLS context (TLS 1.2 at least)."""

    @staticmethod
    def _create_ssl_context(cfg: Any) -> ssl.SSLContext:
        return server_context(Path(cfg.certfile), Path(cfg.keyfile))


class GatewayLog(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own lines (worker booted, exited, replaced) through the service's log handlers
    (JSON with --json-logs); no access log (the app logs each request with its key id)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.handlers = []
        self.error_log.propagate = True


@dataclass
class Shared:
    """What the arbiter makes before it forks, for every worker."""

    buckets: SharedBuckets
    failures: SharedBuckets
    actions: SharedActions
    metrics_dir: Path
    arbiter_pid: int

    @classmethod
    def for_workers(cls) -> Shared:
        return cls(
            SharedBuckets(name="gorse-cdc-key-buckets"),
            SharedBuckets(name="gorse-cdc-auth-failures"),
            SharedActions(),
            Path(tempfile.mkdtemp(prefix="gorse-cdc-gateway-metrics-")),
            os.getpid(),
        )

    def close(self) -> None:
        """In the arbiter only: a worker leaves through the same frames (SystemExit), and the
        folder must outlive every worker."""
        if os.getpid() == self.arbiter_pid:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


async def worker_app(settings: Settings, shared: Shared) -> web.Application:
    """One worker's app: its own connected parts (clients, caches), the arbiter's shared
    buckets and actions. Runs in the worker, after the fork."""
    use_multiprocess_values(shared.metrics_dir)
    stack = contextlib.AsyncExitStack()
    parts = await stack.enter_async_context(open_parts(settings, metrics_dir=shared.metrics_dir))
    parts.status = status_source(settings)
    parts.buckets, parts.failures = shared.buckets, shared.failures
    parts.reads.shared = shared.actions
    app = make_app(parts)

    async def close(_: web.Application) -> None:
        await stack.aclose()

    app.on_cleanup.append(close)
    return app


class GatewayServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's arbiter configured from the settings; ``app`` makes each worker's app."""

    def __init__(
        self, settings: Settings, port: int, *, tls: bool, app: Callable[[], Awaitable[web.Application]]
    ) -> None:
        self.settings = settings
        self.port = port
        self.tls = tls
        self.app = app
        super().__init__()

    def load_config(self) -> None:
        g = self.settings.gateway
        options: dict[str, Any] = {
            "bind": [f"{g.host}:{self.port}"],
            "workers": g.worker_count,
            "worker_class": "gateway.server.GatewayWorker",
            "logger_class": "gateway.server.GatewayLog",
            "backlog": 1024,
            "keepalive": 75,  # above the ALB's 60 s idle timeout: the ALB closes first
            "graceful_timeout": g.shutdown_timeout_s,
            "timeout": 30,  # a worker whose loop is stuck this long is killed and replaced
            "accesslog": None,
            "control_socket_disable": True,  # gunicorn's per-user socket would be shared by every gateway
            "proc_name": "gorse-cdc-gateway",
        }
        if self.tls:
            cert, key = certificate(self.settings)
            options |= {"certfile": str(cert), "keyfile": str(key)}
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> Callable[[], Awaitable[web.Application]]:
        return self.app


async def ensure_key_table(settings: Settings) -> None:
    async with open_aws(settings, "dynamodb") as (dynamodb,):
        await key_store(settings, dynamodb).ensure_table()


def serve(settings: Settings, port: int, *, tls: bool) -> int:
    asyncio.run(ensure_key_table(settings))
    shared = Shared.for_workers()
    server = GatewayServer(settings, port, tls=tls, app=functools.partial(worker_app, settings, shared))
    scheme = "https" if tls else "http"
    log.info(
        "gateway serving on %s://%s:%d with %d workers",
        scheme,
        settings.gateway.host,
        port,
        settings.gateway.worker_count,
    )
    try:
        server.run()  # until SIGTERM/SIGINT: exits through SystemExit
    finally:
        shared.close()
    return 0
