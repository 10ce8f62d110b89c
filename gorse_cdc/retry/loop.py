"""The retry loops: one for coroutines, one for blocking calls (producers: threads, boto3).

Contract, for both:
- ``fn`` is called until it returns; its result is returned.
- An exception that ``classify`` does not call RETRIABLE is re-raised at once, unchanged
  (PERMANENT and FATAL alike: the caller decides what each means for it: dead-letter, stop,
  translate into FatalError...).
- A RETRIABLE one is re-raised, unchanged, once the policy's attempts or deadline are spent;
  otherwise ``on_retry`` is told (for logs and metrics) and ``sleep`` pauses for the backoff.
  Whatever ``on_retry`` or ``sleep`` raise ends the loop (that is how a caller stops it).
- Only ``Exception`` is caught: cancellation and KeyboardInterrupt pass straight through.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gorse_cdc.retry.classify import classify as default_classify
from gorse_cdc.retry.policy import Attempts, Classifier, FailedAttempt, RetryPolicy

T = TypeVar("T")
OnRetry = Callable[[FailedAttempt], None]


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    classify: Classifier = default_classify,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Await ``fn()`` until it succeeds, under ``policy`` (see the module docstring)."""
    attempts = Attempts(policy, classify, clock, rng)
    while True:
        try:
            return await fn()
        except Exception as e:
            retry = attempts.failed(e)
            if retry is None:
                raise
        if on_retry is not None:
            on_retry(retry)
        await sleep(retry.delay_s)


def retry_sync(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    classify: Classifier = default_classify,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn()`` until it succeeds, under ``policy`` (see the module docstring)."""
    attempts = Attempts(policy, classify, clock, rng)
    while True:
        try:
            return fn()
        except Exception as e:
            retry = attempts.failed(e)
            if retry is None:
                raise
        if on_retry is not None:
            on_retry(retry)
        sleep(retry.delay_s)
