"""The operations endpoint: /metrics (Prometheus), /healthz (the process is alive) and
/readyz (holds leases or is balancing, and Gorse is reachable)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from consumers.metrics import Metrics

READY_CACHE_S = 2.0


class HealthServer:
    def __init__(
        self,
        metrics: Metrics,
        is_balancing: Callable[[], bool],
        gorse_ok: Callable[[], Awaitable[bool]],
        host: str = "127.0.0.1",  # containers pass 0.0.0.0 (settings.consumer.metrics_host)
        port: int = 9108,
    ) -> None:
        self.metrics = metrics
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
        status = 200 if ok and balancing else 503
        return web.json_response({"gorse": ok, "leases": balancing}, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
