"""One retry policy for every entry point: what is retried, how long to wait, when to stop.

- ``classify(exc) -> ErrorClass`` (RETRIABLE / PERMANENT / FATAL) is the one classification
  of failures: typed gorse-cdc errors, botocore ClientError codes and HTTP statuses,
  client-side botocore errors, OS-level connection errors and timeouts. ``error_code(exc)``
  is the one place that reads the code out of a ClientError.
- ``RetryPolicy`` + ``Backoff``: capped exponential backoff with full jitter, a server's
  Retry-After as a floor, optional limits in attempts and seconds.
- ``retry_async`` / ``retry_sync``: the one loop, for coroutines and for blocking calls.
- ``RateLimiter``: one token bucket for replays and repairs; 0 or None means unlimited.

Why not tenacity (not a dependency): the whole behaviour fits in one small frozen policy
value; the clock, the sleep and the random draw are injected so unit tests run in
milliseconds and a caller can stop a retry from its sleep (the consumer's shutdown); and the
decision to retry comes from the same ``classify`` that maps the typed errors the dead-letter
logic acts on (a PermanentRecordError is PERMANENT: never retried, bisected and
dead-lettered; a RetriableError is retried, never dead-lettered), so the two cannot drift.
"""

from gorse_cdc.retry.classify import (
    STATUS_CLASS,
    THROTTLING_CODES,
    ErrorClass,
    classify,
    error_code,
    http_status,
    retry_after_s,
    status_class,
)
from gorse_cdc.retry.loop import OnRetry, retry_async, retry_sync
from gorse_cdc.retry.policy import Backoff, FailedAttempt, RetryPolicy
from gorse_cdc.retry.ratelimit import RateLimiter

__all__ = [
    "STATUS_CLASS",
    "THROTTLING_CODES",
    "Backoff",
    "ErrorClass",
    "FailedAttempt",
    "OnRetry",
    "RateLimiter",
    "RetryPolicy",
    "classify",
    "error_code",
    "http_status",
    "retry_after_s",
    "retry_async",
    "retry_sync",
    "status_class",
]
