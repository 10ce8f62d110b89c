"""RateLimiter: at most ``per_s`` units (records, writes) per second on average.

``per_s`` of 0 or None means unlimited (settings.replay.max_records_per_s says "0 =
unlimited"; ``gorse-cdc reconcile --max-writes-per-s`` defaults to None, "no cap"). A negative
rate is a ValueError.

The model is a token bucket holding ``burst_s`` seconds' worth of units, refilled at
``per_s``. A batch of n takes n units, going into debt if need be, and waits until the bucket
holds n units or until it is full again (no debt), whichever comes first. So a batch is never
held back for its own size, only for the batches before it:
- ``burst_s=0`` (the default) is plain pacing: a batch goes at once and pushes the next one
  n/per_s seconds later (the reconcile's repair writes);
- ``burst_s=1`` lets an idle limiter pass one second's worth at once (the replay).

``delay(n)`` only computes the wait (for a caller that sleeps itself); ``acquire(n)`` waits
with the injected ``sleep``. Both count the n units as let through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    def __init__(
        self,
        per_s: float | None,
        *,
        burst_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_s is not None and per_s < 0:
            raise ValueError("a rate limit must be >= 0 (0 or None: unlimited)")
        if burst_s < 0:
            raise ValueError("burst_s must be >= 0")
        self.per_s = per_s or None
        self.burst_s = burst_s
        self._clock = clock
        self._sleep = sleep
        self._paid_until = clock()  # when the units let through so far are paid for

    @property
    def unlimited(self) -> bool:
        return self.per_s is None

    def delay(self, n: int) -> float:
        """Seconds to wait before ``n`` more units may go; they count as gone."""
        if self.per_s is None or n <= 0:
            return 0.0
        now = self._clock()
        paid = max(self._paid_until, now)
        cost = n / self.per_s
        self._paid_until = paid + cost
        until_no_debt = paid - now
        until_n_in_bucket = paid + cost - now - self.burst_s
        return max(0.0, min(until_no_debt, until_n_in_bucket))

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` more units may go."""
        wait = self.delay(n)
        if wait > 0:
            await self._sleep(wait)
