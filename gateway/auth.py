"""Who is calling: an API key (X-API-Key, or ``Authorization: Bearer gcdc_...``) or an OAuth2
JWT bearer token. Gives a ``Principal`` or raises a 401 Problem; ``require`` gives 403.

Looked-up keys are trusted for ``cache_ttl_s`` (the revocation lag; 0 = every request reads the
table); unknown ids are remembered apart from valid keys (gateway.keycache). ``lookups=False``
(the caller's address failed too often) serves from that cache only: no table read. A key table
that is throttled or unreachable answers 503 + Retry-After, not 500. A presented key is never
logged, stored or echoed: only its public id travels on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.jwks import JwksVerifier
from gateway.keycache import KeyCache
from gateway.keys import KeyRecord, Role, key_id_of, matches
from gateway.keystore import KeyStore
from gateway.problems import Problem, forbidden, unauthorized
from gorse_cdc.retry.classify import ErrorClass, classify


@dataclass(frozen=True, slots=True)
class Principal:
    """``ident``: the key id, or ``jwt:<subject>``; ``subject``: set for a JWT (its user)."""

    ident: str
    roles: frozenset[Role]
    rate_per_s: float
    burst: int
    subject: str | None = None

    @property
    def role_label(self) -> str:
        """One bounded metric label."""
        for r in (Role.ADMIN, Role.INGEST, Role.READER):
            if r in self.roles:
                return r.value
        return "none"


def require(principal: Principal, allowed: frozenset[Role], user_id: str | None = None) -> None:
    if not principal.roles & allowed:
        raise forbidden(f"the role {principal.role_label!r} may not call this route")
    if principal.subject is not None and user_id is not None and user_id != principal.subject:
        raise forbidden("a user token may only act for its own user")


class Authenticator:
    def __init__(
        self,
        store: KeyStore,
        pepper: bytes,
        *,
        cache_ttl_s: float,
        jwks: JwksVerifier | None,
        default_rate: tuple[float, int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._pepper = pepper
        self.cache_ttl_s = cache_ttl_s
        self.jwks = jwks
        self.default_rate = default_rate
        self.cache = KeyCache(cache_ttl_s, clock=clock)

    async def _record(self, key_id: str, lookups: bool) -> KeyRecord | None:
        held, rec = self.cache.get(key_id)
        if held:
            return rec
        if not lookups:
            raise Problem(
                429,
                "too-many-failures",
                "too many failed authentications from this address; retry later",
                headers={"Retry-After": "1"},
            )
        try:
            rec = await self.store.get(key_id)
        except Exception as e:
            if classify(e) is ErrorClass.RETRIABLE:  # throttled, 5xx, unreachable
                raise Problem(
                    503,
                    "keys-unavailable",
                    "the API key table cannot be read now; retry shortly",
                    headers={"Retry-After": "1"},
                ) from None
            raise
        self.cache.put(key_id, rec)
        return rec

    async def authenticate(
        self, api_key: str | None, authorization: str | None, *, lookups: bool = True
    ) -> Principal:
        bearer = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise unauthorized("Authorization must be 'Bearer <token>'")
            bearer = value.strip()
        presented = api_key or (bearer if bearer and key_id_of(bearer) else None)
        if presented is not None:
            return await self._by_key(presented, lookups)
        if bearer is not None:
            if self.jwks is None:
                raise unauthorized("bearer tokens are not enabled here; send an API key")
            claims = await self.jwks.verify(bearer)
            rate, burst = self.default_rate
            return Principal(f"jwt:{claims.subject}", claims.roles, rate, burst, claims.subject)
        raise unauthorized("an API key (X-API-Key) or a bearer token is required")

    async def _by_key(self, presented: str, lookups: bool) -> Principal:
        key_id = key_id_of(presented)
        if key_id is None:
            raise unauthorized("the API key is not valid")
        rec = await self._record(key_id, lookups)
        if rec is None or not matches(self._pepper, presented, rec.key_hash):
            raise unauthorized("the API key is not valid")
        if not rec.active:
            raise unauthorized("the API key was revoked")
        return Principal(rec.key_id, frozenset({rec.role}), rec.rate_per_s, rec.burst)
