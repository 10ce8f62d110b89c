"""Backoff, RetryPolicy and the retry loops (gorse_cdc.retry), on injected sleep and clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from gorse_cdc.errors import FatalError, GorseRetriableError, PermanentRecordError, RetriableError
from gorse_cdc.retry import Backoff, FailedAttempt, RetryPolicy, retry_async, retry_sync
from tests.unit.aws_errors import aws_error


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    rng = random.Random(7)
    lows = 0
    for _ in range(200):
        b = Backoff(base_s=0.1, cap_s=1.0, rng=rng)
        for k in range(8):
            ceiling = min(1.0, 0.1 * 2**k)
            assert b.ceiling() == pytest.approx(ceiling)
            d = b.next_delay()
            assert 0.0 <= d <= ceiling
            lows += d < ceiling / 2
    # equal jitter would never go below ceiling/2; full jitter does about half the time
    assert 600 < lows < 1000


def test_the_ceiling_is_capped_and_never_overflows() -> None:
    b = Backoff(base_s=0.1, cap_s=2.0, attempt=5000)
    assert b.ceiling() == 2.0 and 0 <= b.next_delay() <= 2.0


def test_a_server_hint_is_a_floor_capped_at_the_cap() -> None:
    b = Backoff(base_s=0.001, cap_s=5.0, rng=random.Random(1))
    assert b.next_delay(hint_s=3.0) >= 3.0
    assert b.next_delay(hint_s=60.0) == 5.0
    assert b.next_delay(hint_s=None) <= 0.004


def test_reset_starts_over() -> None:
    b = Backoff(base_s=1.0, cap_s=100.0)
    for _ in range(5):
        b.next_delay()
    assert b.ceiling() == 32.0
    b.reset()
    assert b.ceiling() == 1.0


class Flaky:
    """Raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def coro(self) -> str:
        return self()


def recorder() -> tuple[list[float], Callable[[float], None]]:
    slept: list[float] = []
    return slept, slept.append


async def test_async_retries_retriable_errors_then_returns() -> None:
    f = Flaky(RetriableError("a"), aws_error("ThrottlingException"), OSError("reset"))
    slept: list[float] = []
    seen: list[FailedAttempt] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    result = await retry_async(
        f.coro, policy=RetryPolicy(base_s=1.0, cap_s=10.0), sleep=sleep, on_retry=seen.append
    )
    assert result == "ok" and f.calls == 4
    assert [a.number for a in seen] == [1, 2, 3]
    assert [a.delay_s for a in seen] == slept
    assert all(0 <= s <= c for s, c in zip(slept, [1.0, 2.0, 4.0], strict=True))


@pytest.mark.parametrize("error", [PermanentRecordError("bad"), FatalError("stop"), KeyError("bug")])
async def test_async_stops_at_once_on_permanent_and_fatal(error: Exception) -> None:
    f = Flaky(error)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    with pytest.raises(type(error)) as info:
        await retry_async(f.coro, policy=RetryPolicy(), sleep=sleep)
    assert info.value is error and f.calls == 1 and slept == []


def test_sync_gives_up_after_max_attempts_with_the_last_error() -> None:
    errors = [RetriableError(str(i)) for i in range(10)]
    f = Flaky(*errors)
    slept, sleep = recorder()
    with pytest.raises(RetriableError) as info:
        retry_sync(f, policy=RetryPolicy(base_s=0.5, max_attempts=4), sleep=sleep)
    assert info.value is errors[3] and f.calls == 4 and len(slept) == 3


def test_sync_gives_up_before_a_pause_past_the_deadline() -> None:
    now = [0.0]
    f = Flaky(*[OSError("down") for _ in range(100)])

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(OSError):
        retry_sync(
            f, policy=RetryPolicy(base_s=1.0, cap_s=1.0, deadline_s=10.0), sleep=sleep, clock=lambda: now[0]
        )
    assert now[0] <= 10.0 and f.calls > 1


def test_the_retry_after_hint_reaches_the_pause() -> None:
    f = Flaky(GorseRetriableError("PUT", "/api/feedback", 429, "slow down", retry_after_s=3.0))
    slept, sleep = recorder()
    assert retry_sync(f, policy=RetryPolicy(base_s=0.01, cap_s=30.0), sleep=sleep) == "ok"
    assert len(slept) == 1 and slept[0] >= 3.0


def test_a_caller_stops_the_loop_from_its_sleep() -> None:
    class Stop(Exception):
        pass

    def sleep(s: float) -> None:
        raise Stop

    f = Flaky(*[RetriableError("x") for _ in range(5)])
    with pytest.raises(Stop):
        retry_sync(f, policy=RetryPolicy(), sleep=sleep)
    assert f.calls == 1


def test_policy_checks_its_values() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_s=-1)


def test_a_custom_classifier_decides() -> None:
    from gorse_cdc.retry import ErrorClass

    def everything_permanent(_: BaseException) -> ErrorClass:
        return ErrorClass.PERMANENT

    f = Flaky(RetriableError("would be retried"))
    kw: dict[str, Any] = {"policy": RetryPolicy(), "sleep": lambda s: None}
    with pytest.raises(RetriableError):
        retry_sync(f, classify=everything_permanent, **kw)
    assert f.calls == 1
