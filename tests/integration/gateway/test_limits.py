"""What a caller can cost the gateway's upstreams, against a real gateway process with the
default key cache (2 s), its DynamoDB (moto) behind a fault-injecting proxy that counts the
calls and can answer as a throttled table: unknown keys past the per-address budget cost no
read, revocation lags at most the cache's 2 s, a throttled table is 503, /readyz is cached."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator

import pytest

from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings
from tests.integration.gateway.conftest import WORKERS, Gateway, free_port
from tests.integration.gateway.faults import FaultProxy
from tests.integration.gateway.test_security import assert_problem, call
from tests.integration.gateway.test_workers import access_lines


@pytest.fixture(scope="module")
def proxy(stack: object, settings: Settings) -> Iterator[FaultProxy]:
    assert settings.aws_endpoint_url
    with FaultProxy(settings.aws_endpoint_url).running() as p:
        yield p


@pytest.fixture(scope="module")
def gw(
    gateway: Gateway, proxy: FaultProxy, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway with the default key cache TTL, its DynamoDB calls through the proxy."""
    suffix = uuid.uuid4().hex[:8]
    stream = f"gw-limits-{suffix}"
    ensure_stream(settings, stream, 1)
    env = {k: v for k, v in gateway.env.items() if k != "GORSE_CDC_GATEWAY__KEY_CACHE_TTL_S"}
    env |= {
        "GORSE_CDC_AWS__ENDPOINT_URL": proxy.url,
        "GORSE_CDC_GATEWAY__KEYS_TABLE": f"gw-limit-keys-{suffix}",
        "GORSE_CDC_GATEWAY__EVENTS_STREAM": stream,
    }
    g = Gateway(settings, env, free_port(), tmp_path_factory.mktemp("limits") / "gateway.log")
    g.start()
    try:
        yield g
    finally:
        g.stop()


def random_key() -> str:
    return f"gcdc_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


async def test_readyz_is_computed_at_most_once_in_a_few_seconds(gw: Gateway, proxy: FaultProxy) -> None:
    """Was: each hit made three upstream calls (DescribeTable here), the ALB's every 15 s per
    task among them. Once per worker process (each computes its own)."""
    before = proxy.calls["DescribeTable"]
    results = await asyncio.gather(*(call(gw, "GET", "/readyz") for _ in range(10)))
    results += [await call(gw, "GET", "/readyz") for _ in range(5)]
    assert all(r[2] == results[0][2] for r in results) and results[0][2]["checks"]["keys"] is True
    assert 1 <= proxy.calls["DescribeTable"] - before <= WORKERS


async def test_revocation_takes_effect_within_the_default_2_s_key_cache(gw: Gateway) -> None:
    """Accepted = anything but 401 (a busy Gorse may answer 503 past the read deadline). Each
    worker caches the key on its own (read on every worker here, a new connection each): every
    request sent 2 s after the revocation is refused, whichever worker takes it."""
    k = gw.create_key("to-revoke", "reader")
    for _ in range(6):
        status, _, body = await call(gw, "GET", "/v1/latest", key=k["key"])
        assert status != 401, body  # cached from here
    gw.cli("keys", "revoke", k["key_id"])
    revoked_at = time.monotonic()
    late = []
    while (sent := time.monotonic() - revoked_at) < 3.5:
        status = (await call(gw, "GET", "/v1/latest", key=k["key"]))[0]
        if sent > 2.0:
            late.append(status)
        await asyncio.sleep(0.2)  # under this address's failure budget (20, 1/s)
    assert late and late == [401] * len(late), "a revoked key still accepted past the cache TTL"
    assert_problem(*await call(gw, "GET", "/v1/latest", key=k["key"]), 401)


async def test_a_throttled_key_table_is_503_with_retry_after_and_cached_keys_still_pass(
    gw: Gateway, proxy: FaultProxy
) -> None:
    """Was: every request needing a key read answered 500. Each worker caches the keys it
    read: the cached key is read on every worker first (a new connection each)."""
    cached = gw.create_key("cached", "reader")
    uncached = gw.create_key("uncached", "reader")
    for _ in range(10):
        assert (await call(gw, "GET", "/v1/latest", key=cached["key"]))[0] == 200
    served = {line["worker"] for line in access_lines(gw) if line["key_id"] == cached["key_id"]}
    assert len(served) == WORKERS, "the cached key did not reach every worker"
    proxy.throttle = True
    try:
        for _ in range(4):  # whichever worker, within its 2 s
            assert (await call(gw, "GET", "/v1/latest", key=cached["key"]))[0] == 200
        status, headers, body = await call(gw, "GET", "/v1/latest", key=uncached["key"])
        assert_problem(status, headers, body, 503)
        assert headers["Retry-After"] == "1" and body["type"].endswith("/keys-unavailable")
    finally:
        proxy.throttle = False
    assert (await call(gw, "GET", "/v1/latest", key=uncached["key"]))[0] == 200


async def test_unknown_keys_past_the_address_budget_are_429_without_a_table_read(
    gw: Gateway, proxy: FaultProxy
) -> None:
    """Was: every random well-formed key cost a consistent GetItem, without limit. Last in
    this module: it spends this address's failure budget."""
    valid = gw.create_key("valid", "reader")
    statuses = []
    started = time.monotonic()
    for _ in range(40):
        status, headers, body = await call(gw, "GET", "/v1/latest", key=random_key())
        statuses.append(status)
        if status == 429:
            break
        assert_problem(status, headers, body, 401)
    refused = len(statuses) - 1  # the burst (20), plus 1 per second spent
    assert statuses[-1] == 429 and refused <= 20 + int(time.monotonic() - started) + 1, statuses
    assert int(headers["Retry-After"]) >= 1 and body["type"].endswith("/too-many-failures")
    reads, spent_at = proxy.calls["GetItem"], time.monotonic()
    after = [(await call(gw, "GET", "/v1/latest", key=random_key()))[0] for _ in range(20)]
    refilled = int(time.monotonic() - spent_at) + 1  # a slow machine: 1 failure's worth a second
    assert set(after) <= {401, 429} and after.count(401) <= refilled, after
    assert proxy.calls["GetItem"] - reads == after.count(401)  # each 429 refused before any table read
    # a key this address has not used yet is refused too while the budget is spent...
    assert (await call(gw, "GET", "/v1/latest", key=valid["key"]))[0] == 429
    await asyncio.sleep(1.1)  # ...and passes once a failure's worth refilled (1 per second)
    assert (await call(gw, "GET", "/v1/latest", key=valid["key"]))[0] == 200


def test_no_key_in_this_gateways_log_lines(gw: Gateway) -> None:
    text = gw.log.read_text()
    assert text
    for k in gw.keys.values():
        assert k["key"] not in text and str(k["key"]).split("_", 2)[2] not in text
