"""An adaptive limit on the requests in flight to Gorse (additive increase, multiplicative
decrease, as TCP does with its window).

Gorse's SQLite store has one writer; while it is busy (a restarted gorse-in-one writing the
rankings of every user, a model fit) each extra request only waits in Gorse, then fails with
SQLITE_BUSY or a timeout, and is retried after a growing pause: the livelock of the speed issue.
So every answer within ``slow_s`` adds 1/limit (one more per full round of calls), and a slow
answer or a retriable failure multiplies the limit by ``backoff`` (once per ``cooldown_s``: a
burst of slow answers from one episode cuts it once). Callers above the limit wait here, in
order, where no timeout runs, instead of inside Gorse.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class AdaptiveLimit:
    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = 1,
        slow_s: float = 1.0,
        backoff: float = 0.5,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum ({minimum}) <= maximum ({maximum})")
        self.maximum, self.minimum = maximum, minimum
        self.slow_s, self.backoff, self.cooldown_s = slow_s, backoff, cooldown_s
        self._clock = clock
        self.limit = float(maximum)
        self.in_flight = 0
        self.decreases = 0
        self._last_decrease = -float("inf")
        self._waiters: deque[asyncio.Future[None]] = deque()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    async def acquire(self) -> None:
        if not self._waiters and self.in_flight < int(self.limit):
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.in_flight -= 1  # woken and cancelled at once: give the slot back
                self._wake()
            raise

    def release(self, seconds: float, *, failed: bool = False) -> None:
        """One call ended after ``seconds``; ``failed``: a retriable failure (5xx, timeout)."""
        self.in_flight -= 1
        if failed or seconds > self.slow_s:
            now = self._clock()
            if now - self._last_decrease >= self.cooldown_s:
                self._last_decrease = now
                self.limit = max(float(self.minimum), self.limit * self.backoff)
                self.decreases += 1
        else:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
        self._wake()
