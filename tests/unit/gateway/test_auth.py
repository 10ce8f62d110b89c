"""Authentication over a counting in-memory key store (logic only; the real DynamoDB table is in
tests/integration/gateway): the key cache, lookups refused for a failing address, a throttled
table, and the per-address failure budget of the app."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from gateway.app import client_address
from gateway.auth import Authenticator
from gateway.keycache import KeyCache
from gateway.keys import KeyRecord, Role, hash_key, new_key
from gateway.problems import Problem

PEPPER = b"test-pepper"


class CountingStore:
    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}
        self.reads: dict[str, int] = {}
        self.fail: Exception | None = None

    async def get(self, key_id: str) -> KeyRecord | None:
        self.reads[key_id] = self.reads.get(key_id, 0) + 1
        if self.fail is not None:
            raise self.fail
        return self.records.get(key_id)

    def add(self) -> str:
        key_id, key = new_key()
        self.records[key_id] = KeyRecord(
            key_id, hash_key(PEPPER, key), Role.READER, 10, 10, "t", datetime.now(UTC)
        )
        return key


def auth(store: CountingStore, ttl: float = 2.0, now: list[float] | None = None) -> Authenticator:
    clock = now or [0.0]
    return Authenticator(
        store,  # type: ignore[arg-type]
        PEPPER,
        cache_ttl_s=ttl,
        jwks=None,
        default_rate=(1, 1),
        clock=lambda: clock[0],
    )


def random_key() -> str:
    return f"gcdc_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


async def test_a_flood_of_unknown_keys_never_evicts_a_valid_one() -> None:
    """Was: past 50,000 cached entries the whole cache was cleared, valid keys with it."""
    store = CountingStore()
    valid = store.add()
    a = auth(store)
    assert (await a.authenticate(valid, None)).roles == {Role.READER}
    for _ in range(60_000):
        with pytest.raises(Problem) as refused:
            await a.authenticate(random_key(), None)
        assert refused.value.status == 401
    await a.authenticate(valid, None)
    assert sum(store.reads.values()) == 60_001  # the valid key was read once, from the cache after
    assert a.cache.sizes() == (1, a.cache.max_missing)


def test_the_key_cache_expires_and_keeps_found_and_missing_apart() -> None:
    now = [0.0]
    cache = KeyCache(2.0, max_found=2, max_missing=1, clock=lambda: now[0])
    rec = KeyRecord("a", "h", Role.READER, 1, 1, "", datetime.now(UTC))
    cache.put("a", rec)
    cache.put("x", None)
    cache.put("y", None)  # evicts x only
    assert (
        cache.get("a") == (True, rec) and cache.get("y") == (True, None) and cache.get("x") == (False, None)
    )
    now[0] = 2.0
    assert cache.get("a") == (False, None) and cache.get("y") == (False, None)
    off = KeyCache(0.0)
    off.put("a", rec)
    assert off.get("a") == (False, None)


async def test_without_lookups_only_cached_keys_pass_and_nothing_is_read() -> None:
    store = CountingStore()
    valid = store.add()
    a = auth(store)
    await a.authenticate(valid, None)
    assert (await a.authenticate(valid, None, lookups=False)).roles == {Role.READER}
    unknown = random_key()
    with pytest.raises(Problem) as refused:
        await a.authenticate(unknown, None, lookups=False)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"]
    assert unknown.split("_")[1] not in store.reads


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"]
)
async def test_a_throttled_key_table_is_503_with_retry_after(code: str) -> None:
    store = CountingStore()
    store.fail = ClientError({"Error": {"Code": code, "Message": "slow down"}}, "GetItem")
    with pytest.raises(Problem) as refused:
        await auth(store).authenticate(random_key(), None)
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
    store.fail = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetItem")
    with pytest.raises(ClientError):  # a broken deployment stays a 500, and logged
        await auth(store).authenticate(random_key(), None)


def test_the_client_address_trusts_only_the_entries_its_proxies_appended() -> None:
    from aiohttp.test_utils import make_mocked_request

    req = make_mocked_request("GET", "/", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    assert client_address(req, 1) == "203.0.113.7"  # the ALB's entry, not the client's claim
    assert client_address(req, 2) == "6.6.6.6"
    bare = make_mocked_request("GET", "/")
    assert client_address(bare, 1) == client_address(bare, 0) == (bare.remote or "unknown")
