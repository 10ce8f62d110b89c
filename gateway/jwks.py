"""OAuth2 / OIDC bearer tokens (Cognito-style) verified against a JWKS with PyJWT.

The JWKS is fetched over HTTPS (aiohttp; plain HTTP only to a loopback host, and only when
``allow_loopback_http``) and kept. Concurrent callers share one fetch, and a fetch counts as done
only once it succeeded: a token naming an unknown ``kid`` makes one refetch at most every
``min_refetch_s`` (key rotation); after a failed fetch the next one waits ``retry_s`` and tokens
meanwhile get 503 (the issuer's keys are unavailable), never a 401 for a valid token. A JWKS
that cannot be parsed is a failed fetch. Only asymmetric algorithms are accepted (RS256, ES256),
and only the one of the key the ``kid`` names: an HS256 token signed with a public key, ``none``,
or an ES256 header on an RSA key is a 401.

The token must be for this app: ``audience`` is the app client id. A Cognito access token
(``token_use`` = access) carries it in ``client_id``, an id token (``token_use`` = id) in
``aud``; a token without ``token_use`` must carry it in ``aud``; any other ``token_use`` is
refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

from gateway.keys import Role
from gateway.problems import Problem, unauthorized

ALGORITHMS = ["RS256", "ES256"]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    roles: frozenset[Role]
    client_id: str


def check_jwks_url(url: str, *, allow_loopback_http: bool) -> None:
    """Raises ValueError unless ``url`` is https (or http to a loopback host, when allowed)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and allow_loopback_http and parts.hostname:
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return
    raise ValueError(f"the JWKS URL must be https (got {parts.scheme or 'no'} scheme for {parts.hostname})")


def _unavailable(detail: str, retry_s: float) -> Problem:
    return Problem(
        503, "jwks-unavailable", detail, headers={"Retry-After": str(max(1, int(retry_s + 0.999)))}
    )


class JwksVerifier:
    def __init__(
        self,
        url: str,
        *,
        issuer: str | None,
        audience: str,
        role_claim: str,
        session: aiohttp.ClientSession,
        min_refetch_s: float = 30.0,
        retry_s: float = 2.0,
        allow_loopback_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_jwks_url(url, allow_loopback_http=allow_loopback_http)
        if not audience:
            raise ValueError("a JWT audience (the app client id) is required")
        self.url = url
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self._session = session
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # the last fetch that succeeded
        self._failed: tuple[float, str] | None = None  # the last failure, when after it
        self._pending: asyncio.Future[None] | None = None
        self.min_refetch_s = min_refetch_s
        self.retry_s = retry_s

    async def _refresh(self) -> None:
        if self._pending is None:
            now = self._clock()
            if now - self._fetched_at < self.min_refetch_s:
                return
            if self._failed is not None and now - self._failed[0] < self.retry_s:
                raise _unavailable(self._failed[1], self.retry_s - (now - self._failed[0]))
            self._pending = asyncio.ensure_future(self._fetch())
            self._pending.add_done_callback(self._fetched)
        await asyncio.shield(self._pending)

    def _fetched(self, done: asyncio.Future[None]) -> None:
        self._pending = None
        if not done.cancelled():
            done.exception()  # retrieved: raised to every waiter, not logged as lost

    async def _fetch(self) -> None:
        try:
            async with self._session.get(self.url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                resp.raise_for_status()
                doc = await resp.json(content_type=None)
            if not isinstance(doc, dict):
                raise ValueError("the JWKS is not a JSON object")
            keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(doc).keys if k.key_id}
        except (aiohttp.ClientError, TimeoutError, ValueError, TypeError, KeyError, jwt.PyJWTError) as e:
            detail = f"the token issuer's keys cannot be read: {type(e).__name__}"
            log.warning("JWKS fetch from %s failed: %s", self.url, e)
            self._failed = (self._clock(), detail)
            raise _unavailable(detail, self.retry_s) from None
        self._keys, self._fetched_at, self._failed = keys, self._clock(), None

    async def verify(self, token: str) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("the bearer token is not a JWT") from None
        kid, alg = header.get("kid"), header.get("alg")
        if alg not in ALGORITHMS or not isinstance(kid, str) or not kid:
            raise unauthorized("the bearer token's algorithm or key id is not accepted")
        if kid not in self._keys:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise unauthorized("the bearer token is signed by an unknown key")
        if alg != key.algorithm_name:
            raise unauthorized("the bearer token's algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError as e:
            raise unauthorized(f"the bearer token is not valid: {type(e).__name__}") from None
        self._check_audience(claims)
        raw = claims.get(self.role_claim) or [Role.READER.value]
        names = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
        roles = frozenset(Role(n) for n in names if n in Role.__members__.values())
        return TokenClaims(str(claims["sub"]), roles or frozenset({Role.READER}), self.audience)

    def _check_audience(self, claims: dict[str, Any]) -> None:
        use = claims.get("token_use")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if use == "access":
            ok = claims.get("client_id") == self.audience
        elif use is None or use == "id":
            ok = self.audience in auds
        else:
            raise unauthorized("the bearer token's token_use is not accepted")
        if not ok:
            raise unauthorized("the bearer token was issued for another client")
