"""OAuth2 / OIDC bearer tokens (Cognito-style) verified against a JWKS with PyJWT.

The JWKS is fetched over HTTPS (aiohttp) and kept; a token naming an unknown ``kid`` makes one
refetch at most every ``min_refetch_s`` (key rotation), never one per request. Only asymmetric
algorithms are accepted (RS256, ES256): an HS256 token signed with a public key is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from gateway.keys import Role
from gateway.problems import Problem, unauthorized

ALGORITHMS = ["RS256", "ES256"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    roles: frozenset[Role]
    client_id: str


class JwksVerifier:
    def __init__(
        self,
        url: str,
        *,
        issuer: str | None,
        audience: str | None,
        role_claim: str,
        session: aiohttp.ClientSession,
        min_refetch_s: float = 30.0,
    ) -> None:
        self.url = url
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self._session = session
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self.min_refetch_s = min_refetch_s

    async def _refresh(self) -> None:
        if time.monotonic() - self._fetched_at < self.min_refetch_s:
            return
        self._fetched_at = time.monotonic()
        try:
            async with self._session.get(self.url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                resp.raise_for_status()
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise Problem(503, "jwks-unavailable", f"the token issuer's keys cannot be read: {e}") from None
        keyset = jwt.PyJWKSet.from_dict(doc)
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}

    async def verify(self, token: str) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("the bearer token is not a JWT") from None
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not kid:
            raise unauthorized("the bearer token's algorithm or key id is not accepted")
        if kid not in self._keys:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise unauthorized("the bearer token is signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as e:
            raise unauthorized(f"the bearer token is not valid: {type(e).__name__}") from None
        raw = claims.get(self.role_claim) or [Role.READER.value]
        names = [raw] if isinstance(raw, str) else list(raw)
        roles = frozenset(Role(n) for n in names if n in Role.__members__.values())
        client = str(claims.get("client_id") or claims.get("azp") or claims.get("aud") or "jwt")
        return TokenClaims(str(claims["sub"]), roles or frozenset({Role.READER}), client)
