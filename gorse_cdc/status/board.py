"""The status page's data: the latest readings + verdict, and an hour of points for its charts
(lag, throughput, errors). ``History`` is pure; ``StatusBoard`` reads through a StatusReader at
most every ``min_interval_s`` (callers share one read) and, once asked, keeps sampling in the
background every ``sample_s`` so the charts fill while nobody watches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gorse_cdc.status.model import Readings, Thresholds, Verdict, assess, to_json

HOUR_S = 3600.0


@dataclass(frozen=True)
class Point:
    t: float  # unix seconds
    behind_s: float  # the worst shard's behind-latest
    records_per_s: float  # read by every consumer, summed
    dead_letters: int
    gateway_5xx_per_s: float
    gateway_429_per_s: float
    blocked: int  # shards blocked or stalled
    findings: int  # findings of severity page

    def to_json(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def point(r: Readings, v: Verdict) -> Point:
    rows = [row for s in r.streams for row in s.shards if not row.ended]
    g = r.gateway
    return Point(
        t=r.at.timestamp(),
        behind_s=max((row.behind_ms or 0) / 1000 for row in rows) if rows else 0.0,
        records_per_s=sum(row.records_per_s or 0 for row in rows),
        dead_letters=r.dead_letters.count if r.dead_letters else 0,
        gateway_5xx_per_s=(g.errors_per_s or 0.0) if g else 0.0,
        gateway_429_per_s=(g.rate_limited_per_s or 0.0) if g else 0.0,
        blocked=sum(1 for row in rows if row.blocked or row.stalled),
        findings=sum(1 for f in v.findings if f.severity.value == "page"),
    )


class History:
    """Points of the last ``keep_s`` seconds, oldest first."""

    def __init__(self, keep_s: float = HOUR_S) -> None:
        self.keep_s = keep_s
        self._points: deque[Point] = deque()

    def add(self, p: Point) -> None:
        self._points.append(p)
        while self._points and self._points[0].t < p.t - self.keep_s:
            self._points.popleft()

    def points(self) -> list[Point]:
        return list(self._points)


class StatusBoard:
    def __init__(
        self,
        read: Callable[[], Awaitable[Readings]],
        thresholds: Thresholds | None = None,
        min_interval_s: float = 2.0,
        sample_s: float = 15.0,
        on_read: Callable[[Readings, Verdict], None] | None = None,
    ) -> None:
        self.on_read = on_read
        self.read = read
        self.thresholds = thresholds or Thresholds()
        self.min_interval_s = min_interval_s
        self.sample_s = sample_s
        self.history = History()
        self._last: tuple[float, dict[str, Any]] | None = None
        self._pending: asyncio.Future[dict[str, Any]] | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def _take(self) -> dict[str, Any]:
        readings = await self.read()
        verdict = assess(readings, self.thresholds)
        if self.on_read is not None:
            self.on_read(readings, verdict)
        self.history.add(point(readings, verdict))
        doc = to_json(readings, verdict)
        self._last = (time.monotonic(), doc)
        return doc

    async def snapshot(self) -> dict[str, Any]:
        """The latest document (at most min_interval_s old) with the hour's points."""
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample(), name="status-sampler")
        if self._last is None or time.monotonic() - self._last[0] >= self.min_interval_s:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._take())
                self._pending.add_done_callback(lambda _: setattr(self, "_pending", None))
            doc = await asyncio.shield(self._pending)
        else:
            doc = self._last[1]
        return {**doc, "history": [p.to_json() for p in self.history.points()]}

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.sample_s)
            with contextlib.suppress(Exception):  # a failed read is the next snapshot's finding
                if self._last is None or time.monotonic() - self._last[0] >= self.sample_s / 2:
                    await self._take()

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
