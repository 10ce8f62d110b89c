"""How long to wait between tries, and when to stop trying. Pure apart from the random draw
(injectable) and the clock (injectable).

Backoff: capped exponential with full jitter. Before try k+1 (k = 0, 1, ...) the pause is
uniform(0, min(cap_s, base_s * 2**k)); a server's hint (Retry-After) is a floor, itself
capped at cap_s, so one hint never stalls a caller longer than its policy allows.

RetryPolicy: one value for the whole retry behaviour of a call site: the backoff's base and
cap, and optionally a limit in attempts and/or in seconds since the first try.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gorse_cdc.retry.classify import ErrorClass, retry_after_s

Classifier = Callable[[BaseException], ErrorClass]
_MAX_DOUBLINGS = 60  # 2**60 * any sane base is past any cap; keeps the float finite forever


@dataclass
class Backoff:
    base_s: float = 0.1
    cap_s: float = 10.0
    attempt: int = 0
    rng: random.Random | None = field(default=None, repr=False, compare=False)

    def ceiling(self) -> float:
        """The largest pause the next ``next_delay`` may return (hint aside)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, _MAX_DOUBLINGS))

    def next_delay(self, hint_s: float | None = None) -> float:
        """The pause before the next try; ``hint_s`` (Retry-After) is a floor, capped at cap_s."""
        ceiling = self.ceiling()
        self.attempt += 1
        delay = (self.rng or random).uniform(0.0, ceiling)
        return max(delay, min(hint_s, self.cap_s)) if hint_s else delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts every try, the first included (None: no limit);
    ``deadline_s`` stops before a pause that would end later than that many seconds after
    the first try began (None: no limit). With neither, only a non-retriable error (or the
    caller, e.g. by raising from its sleep) ends the loop."""

    base_s: float = 0.1
    cap_s: float = 10.0
    max_attempts: int | None = None
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("backoff base and cap must be >= 0")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def backoff(self, rng: random.Random | None = None) -> Backoff:
        return Backoff(self.base_s, self.cap_s, rng=rng)


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """What ``on_retry`` is told: try ``number`` (1-based) failed with ``error``; the next
    try follows after ``delay_s`` seconds."""

    number: int
    error: Exception
    delay_s: float


class Attempts:
    """The state of one retrying call: its tries so far, its backoff, its start time. The
    sync and async loops share it, so they cannot disagree on when to stop."""

    def __init__(
        self,
        policy: RetryPolicy,
        classify: Classifier,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.classify = classify
        self.clock = clock
        self.backoff = policy.backoff(rng)
        self.started = clock()
        self.number = 0

    def failed(self, error: Exception) -> FailedAttempt | None:
        """Record a failed try; the retry to make, or None: give up and re-raise ``error``."""
        self.number += 1
        if self.classify(error) is not ErrorClass.RETRIABLE:
            return None
        limit = self.policy.max_attempts
        if limit is not None and self.number >= limit:
            return None
        delay = self.backoff.next_delay(retry_after_s(error))
        deadline = self.policy.deadline_s
        if deadline is not None and self.clock() + delay - self.started > deadline:
            return None
        return FailedAttempt(self.number, error, delay)
