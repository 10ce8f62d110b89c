"""The adaptive limit on requests in flight to Gorse (gorse_cdc.gorse.limiter): logic only."""

from __future__ import annotations

import asyncio

import pytest

from gorse_cdc.gorse.limiter import AdaptiveLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_slow_answers_halve_the_limit_once_per_cooldown_and_fast_ones_grow_it_back() -> None:
    clock = Clock()
    lim = AdaptiveLimit(16, slow_s=1.0, cooldown_s=1.0, clock=clock)
    for _ in range(5):  # one episode of slow answers: one cut
        await lim.acquire()
        lim.release(3.0)
    assert lim.limit == 8.0 and lim.decreases == 1
    clock.now = 2.0
    await lim.acquire()
    lim.release(0.0, failed=True)  # a 5xx after the cooldown: another cut
    assert lim.limit == 4.0
    for _ in range(200):
        await lim.acquire()
        lim.release(0.01)
    assert lim.limit == 16.0  # capped at the maximum


async def test_never_below_the_minimum() -> None:
    clock = Clock()
    lim = AdaptiveLimit(4, minimum=1, cooldown_s=0.0, clock=clock)
    for _ in range(10):
        await lim.acquire()
        lim.release(0.0, failed=True)
    assert lim.limit == 1.0


async def test_callers_above_the_limit_wait_in_order_and_none_is_lost() -> None:
    lim = AdaptiveLimit(2, cooldown_s=0.0)
    lim.limit = 2.0
    order: list[int] = []
    peak = 0

    async def call(i: int) -> None:
        nonlocal peak
        await lim.acquire()
        peak = max(peak, lim.in_flight)
        order.append(i)
        await asyncio.sleep(0.01)
        lim.release(0.01)

    await asyncio.gather(*(call(i) for i in range(10)))
    assert peak <= 2 and sorted(order) == list(range(10)) and order[:2] == [0, 1]
    assert lim.in_flight == 0


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    lim = AdaptiveLimit(1)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    lim.release(0.0)
    assert lim.in_flight == 0
    await asyncio.wait_for(lim.acquire(), 1)  # the slot is free again
    assert lim.in_flight == 1


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveLimit(2, minimum=3)
