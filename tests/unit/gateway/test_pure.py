"""The gateway's pure parts: token buckets, keys and hashes, problems, paging, the TTL cache,
the event models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.cache import TtlCache
from gateway.events import EventBatch, check_types, to_record
from gateway.keys import hash_key, key_id_of, matches, new_key
from gateway.problems import Problem, too_many
from gateway.ratelimit import Buckets, TokenBucket
from gateway.reads import page


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    b = TokenBucket.full(rate=2, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)  # one token back in 1/rate
    assert b.take(0.5) == 0.0
    assert b.take(0.5) > 0
    assert b.take(100.0) == 0.0 and b.tokens == pytest.approx(2.0)  # capped at burst, minus one


@given(st.lists(st.floats(0, 0.2), min_size=1, max_size=200))
def test_a_bucket_never_allows_more_than_burst_plus_rate_times_time(gaps: list[float]) -> None:
    rate, burst = 5.0, 4
    b, now, allowed = TokenBucket.full(rate, burst, 0.0), 0.0, 0
    for g in gaps:
        now += g
        allowed += b.take(now) == 0.0
    assert allowed <= burst + rate * now + 1e-9


def test_buckets_are_per_key_and_bounded() -> None:
    buckets = Buckets(max_keys=2)
    assert buckets.take("a", 1, 1, 0.0) == 0.0
    assert buckets.take("a", 1, 1, 0.0) > 0
    assert buckets.take("b", 1, 1, 0.0) == 0.0  # another key has its own bucket
    buckets.take("c", 1, 1, 0.0)
    assert len(buckets) == 2


def test_keys_are_random_shaped_and_only_their_hmac_matches() -> None:
    key_id, key = new_key()
    assert key_id_of(key) == key_id and key.startswith(f"gcdc_{key_id}_")
    assert new_key()[1] != key
    stored = hash_key(b"pepper", key)
    assert key not in stored and matches(b"pepper", key, stored)
    assert not matches(b"other pepper", key, stored)
    assert not matches(b"pepper", key[:-1] + ("A" if key[-1] != "A" else "B"), stored)
    for bad in ("", "gcdc_", "gcdc_xyz_abc", key + "x", key.replace("gcdc", "gcdx")):
        assert key_id_of(bad) is None


def test_a_problem_renders_rfc9457_with_extras_and_headers() -> None:
    p = Problem(400, "bad-request", "the events are not valid", errors=[{"loc": ["events", 0]}])
    doc = orjson.loads(p.body("/v1/events"))
    assert doc["status"] == 400 and doc["type"].endswith("/bad-request") and doc["title"] == "Bad Request"
    assert doc["instance"] == "/v1/events" and doc["errors"] == [{"loc": ["events", 0]}]
    assert too_many(0.2).headers["Retry-After"] == "1" and too_many(2.5).headers["Retry-After"] == "3"


def test_a_page_is_a_slice() -> None:
    assert page(["a", "b", "c"], 1, 1) == ["b"]
    assert page(["a"], 3, 2) == []


async def test_the_cache_expires_counts_and_shares_one_load() -> None:
    now = [0.0]
    seen: list[tuple[str, bool]] = []
    cache: TtlCache[int] = TtlCache(
        "t", 10, 2, on_result=lambda n, h: seen.append((n, h)), clock=lambda: now[0]
    )
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return loads

    assert await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(5))) == [1] * 5
    assert loads == 1 and cache.misses == 1 and cache.hits == 4
    now[0] = 11
    assert await cache.get_or_load("k", load) == 2
    assert seen.count(("t", False)) == 2


async def test_a_failed_load_is_not_cached() -> None:
    cache: TtlCache[int] = TtlCache("t", 10, 10)

    async def boom() -> int:
        raise RuntimeError("gorse down")

    with pytest.raises(RuntimeError):
        await cache.get_or_load("k", boom)
    assert cache.get("k") == (False, None)


def test_events_are_validated_and_become_records_keyed_by_user() -> None:
    batch = EventBatch.model_validate_json(b'{"events": [{"user": "u1", "item": "m1", "type": "play"}]}')
    rec = to_record(batch.events[0], datetime(2026, 11, 28, tzinfo=UTC))
    assert rec["PartitionKey"] == "u1"
    body = orjson.loads(rec["Data"])  # type: ignore[arg-type]
    assert body == {
        "gorse-cdc": "event",
        "user": "u1",
        "item": "m1",
        "type": "play",
        "ts": "2026-11-28T00:00:00+00:00",
        "value": 1.0,
    }
    assert check_types(batch, frozenset({"complete"}))[0]["loc"] == ["events", 0, "type"]
    for bad in (
        {"events": []},
        {"events": [{"user": "a/b", "item": "m", "type": "play"}]},
        {"events": [{"user": "..", "item": "m", "type": "play"}]},
        {"events": [{"user": "u", "item": "m", "type": "play", "extra": 1}]},
        {"events": [{"user": "u", "item": "m", "type": "play", "value": "NaN"}]},
        {"events": [{"user": "u", "item": "m"}]},
    ):
        with pytest.raises(ValidationError):
            EventBatch.model_validate(bad)
