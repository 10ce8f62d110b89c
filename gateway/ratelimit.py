"""Token buckets per API key. Pure: the clock is passed in, nothing sleeps.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
takes one. When empty, ``take`` says how long until one token is back (the Retry-After).
``Buckets`` keeps one bucket per key id, bounded: the least recently used bucket is dropped
past ``max_keys`` (a dropped key starts again with a full bucket, which only ever allows more).

``Buckets`` lives in one process; ``gateway.sharedbuckets.SharedBuckets`` is the same table in
memory shared by the workers of one gateway (``BucketTable`` is what both promise). Behind a
load balancer with N gateway tasks a key gets up to N times its rate (the WAF's per-address
rule is the fleet-wide bound).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs rate > 0 and burst >= 1")
        return cls(rate, burst, burst, now)

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 when allowed, else the seconds until it would be."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Like ``take`` without taking: 0.0 when ``cost`` tokens are there."""
        tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate


class BucketTable(Protocol):
    """One token bucket per key id, bounded. A bucket dropped to stay in bounds starts again
    full (only ever allows more); a key whose rate or burst changed starts again full."""

    def wait(self, key_id: str, rate: float, burst: float, now: float) -> float:
        """The seconds until ``key_id`` could take a token (0.0: now); takes nothing."""
        ...

    def take(self, key_id: str, rate: float, burst: float, now: float) -> float:
        """Take a token: 0.0 when allowed, else the seconds until it would be (Retry-After)."""
        ...


class Buckets:
    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def wait(self, key_id: str, rate: float, burst: float, now: float) -> float:
        """The seconds until ``key_id`` could take a token (0.0: now); takes nothing."""
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            return 0.0
        return bucket.wait(now)

    def take(self, key_id: str, rate: float, burst: float, now: float) -> float:
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = TokenBucket.full(rate, burst, now)
            self._buckets[key_id] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key_id)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)
