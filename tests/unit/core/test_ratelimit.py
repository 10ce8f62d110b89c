"""The one RateLimiter (gorse_cdc.retry.ratelimit): 0 or None = unlimited, pacing and burst."""

from __future__ import annotations

import pytest

from gorse_cdc.retry import RateLimiter


@pytest.mark.parametrize("rate", [0, 0.0, None])
async def test_zero_or_none_is_unlimited(rate: float | None) -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    lim = RateLimiter(rate, clock=lambda: 0.0, sleep=sleep)
    assert lim.unlimited
    assert lim.delay(10**9) == 0.0
    for _ in range(3):
        await lim.acquire(10**6)
    assert slept == []


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="unlimited"):
        RateLimiter(-1)


def test_pacing_a_batch_goes_at_once_and_pushes_the_next() -> None:
    now = [0.0]
    lim = RateLimiter(10, clock=lambda: now[0])
    assert lim.delay(1000) == 0.0  # never held back for its own size
    assert lim.delay(1) == pytest.approx(100.0)
    now[0] = 200.0  # idle long enough: no debt left
    assert lim.delay(5) == 0.0
    assert lim.delay(5) == pytest.approx(0.5)


def test_burst_lets_an_idle_limiter_pass_its_worth_at_once() -> None:
    now = [0.0]
    lim = RateLimiter(100, burst_s=2.0, clock=lambda: now[0])
    assert [lim.delay(50) for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    assert lim.delay(50) == pytest.approx(0.5)
    now[0] = 10.0
    assert lim.delay(200) == 0.0  # the bucket refilled, up to its size
    assert lim.delay(100) == pytest.approx(1.0)


def test_the_average_rate_holds_over_time() -> None:
    now = [0.0]
    lim = RateLimiter(50, burst_s=1.0, clock=lambda: now[0])
    for _ in range(100):
        now[0] += lim.delay(10)
    # 1000 units at 50/s: 20 s, less the one-second burst
    assert now[0] == pytest.approx(19.0)
