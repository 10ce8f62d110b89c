"""The gateway's connected parts, built by gateway.wiring and handed to the app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import Authenticator
from gateway.metrics import GatewayMetrics
from gateway.publisher import EventPublisher
from gateway.ratelimit import Buckets, BucketTable
from gateway.reads import Reads


@dataclass
class Parts:
    """``auth_failures``: (rate per s, burst) of failed authentications allowed per client
    address before its unknown keys are refused without a table read; ``forwarded_hops``: the
    proxies in front that append to X-Forwarded-For (1 behind the ALB; 0: the peer address);
    ``ready_ttl_s``: how long one readiness answer is reused (its checks call three upstreams)."""

    auth: Authenticator
    reads: Reads
    publisher: EventPublisher
    metrics: GatewayMetrics
    event_types: frozenset[str]
    max_events: int = 500
    max_body_bytes: int = 256 * 1024
    cors_origins: frozenset[str] = frozenset()
    buckets: BucketTable = field(default_factory=Buckets)
    auth_failures: tuple[float, int] = (1.0, 20)
    failures: BucketTable = field(default_factory=lambda: Buckets(max_keys=100_000))
    forwarded_hops: int = 0
    checks: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)
    ready_ttl_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    # the status page's document (gorse_cdc.status.board.StatusBoard.snapshot), set by the server
    status: Callable[[], Awaitable[dict[str, Any]]] | None = None
    _ready: tuple[float, dict[str, bool]] | None = field(default=None, init=False, repr=False)
    _ready_pending: asyncio.Future[dict[str, bool]] | None = field(default=None, init=False, repr=False)

    async def readiness(self) -> dict[str, bool]:
        """Each check's result, computed at most once per ``ready_ttl_s`` (concurrent callers
        share one computation)."""
        if self._ready is not None and self.clock() - self._ready[0] < self.ready_ttl_s:
            return self._ready[1]
        if self._ready_pending is None:
            self._ready_pending = asyncio.ensure_future(self._check())
            self._ready_pending.add_done_callback(self._checked)
        return await asyncio.shield(self._ready_pending)

    def _checked(self, done: asyncio.Future[dict[str, bool]]) -> None:
        self._ready_pending = None
        if not done.cancelled() and done.exception() is None:
            self._ready = (self.clock(), done.result())

    async def _check(self) -> dict[str, bool]:
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[n](), 2.0) for n in names), return_exceptions=True
        )
        return {n: r is True for n, r in zip(names, results, strict=True)}
