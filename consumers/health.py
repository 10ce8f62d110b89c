"""The operations endpoint: /metrics (Prometheus), /healthz (the process is alive) and
/readyz (holds leases or is balancing, Gorse is reachable, and writes are not blocked by the
pipeline itself: a wrong key, a wrong URL, TLS)."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from consumers.metrics import Metrics
from gorse_cdc.errors import FatalError

READY_CACHE_S = 2.0
PORT_TRIES = 10  # several workers on one host take the next free ports

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self,
        metrics: Metrics,
        is_balancing: Callable[[], bool],
        gorse_ok: Callable[[], Awaitable[bool]],
        host: str = "127.0.0.1",  # containers pass 0.0.0.0 (settings.consumer.metrics_host)
        port: int = 9108,
        blocked: Callable[[], str | None] = lambda: None,
        stalled: Callable[[], list[str]] = list,
    ) -> None:
        self.metrics = metrics
        self.blocked = blocked
        self.stalled = stalled
        self.is_balancing = is_balancing
        self.gorse_ok = gorse_ok
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._gorse_checked: tuple[float, bool] = (0.0, False)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        at, ok = self._gorse_checked
        if time.monotonic() - at > READY_CACHE_S:
            ok = await self.gorse_ok()
            self._gorse_checked = (time.monotonic(), ok)
        balancing = self.is_balancing()
        blocked, stalled = self.blocked(), self.stalled()
        status = 200 if ok and balancing and blocked is None and not stalled else 503
        body = {"gorse": ok, "leases": balancing, "blocked": blocked, "stalled": stalled}
        return web.json_response(body, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        wanted = self.port
        for port in range(wanted, wanted + PORT_TRIES):
            try:
                await web.TCPSite(self._runner, self.host, port).start()
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            self.port = port
            if port != wanted:
                log.warning(
                    "metrics port %d is taken (another worker on this host?): serving /metrics, "
                    "/healthz and /readyz on %s:%d; set GORSE_CDC_CONSUMER__METRICS_PORT to choose",
                    wanted,
                    self.host,
                    port,
                )
            return
        await self._runner.cleanup()
        raise FatalError(
            f"metrics ports {wanted}-{wanted + PORT_TRIES - 1} on {self.host} are all taken: set "
            "GORSE_CDC_CONSUMER__METRICS_PORT (or --metrics-port; 0 disables the endpoint)"
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
