"""The repair's Gorse writes on failure: a few tries, then the job stops (no Spark needed)."""

from __future__ import annotations

import pytest

from glue.writes import REPAIR_RETRY, with_retries
from gorse_cdc.errors import FatalError, GorsePermanentError, GorseRetriableError
from gorse_cdc.retry import RetryPolicy

FAST = RetryPolicy(base_s=0.0001, cap_s=0.0001, max_attempts=REPAIR_RETRY.max_attempts)


class Calls:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.n = 0

    async def __call__(self) -> int:
        self.n += 1
        if self.errors:
            raise self.errors.pop(0)
        return 42


def down() -> GorseRetriableError:
    return GorseRetriableError("POST", "/api/users", 503, "database is locked")


async def test_retriable_failures_are_retried_then_the_write_goes_through() -> None:
    call = Calls(down(), down())
    assert await with_retries(call, FAST) == 42 and call.n == 3


async def test_gorse_that_keeps_failing_stops_the_job() -> None:
    call = Calls(*[down() for _ in range(10)])
    with pytest.raises(FatalError, match="giving up") as info:
        await with_retries(call, FAST)
    assert call.n == 5 and isinstance(info.value.__cause__, GorseRetriableError)


async def test_a_refused_write_is_not_retried() -> None:
    refused = GorsePermanentError("POST", "/api/users", 400, "bad labels")
    call = Calls(refused)
    with pytest.raises(GorsePermanentError):
        await with_retries(call, FAST)
    assert call.n == 1
