"""The gateway's connected parts, built by gateway.wiring and handed to the app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.auth import Authenticator
from gateway.metrics import GatewayMetrics
from gateway.publisher import EventPublisher
from gateway.ratelimit import Buckets
from gateway.reads import Reads


@dataclass
class Parts:
    auth: Authenticator
    reads: Reads
    publisher: EventPublisher
    metrics: GatewayMetrics
    event_types: frozenset[str]
    max_events: int = 500
    max_body_bytes: int = 256 * 1024
    cors_origins: frozenset[str] = frozenset()
    buckets: Buckets = field(default_factory=Buckets)
    checks: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)

    async def readiness(self) -> dict[str, bool]:
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[n](), 2.0) for n in names), return_exceptions=True
        )
        return {n: r is True for n, r in zip(names, results, strict=True)}
