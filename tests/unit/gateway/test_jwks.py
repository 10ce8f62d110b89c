"""The JWKS verifier against a JWKS served on loopback by a real aiohttp server (the issuer's
side of OAuth2, with test keys): the first fetch shared, a failed fetch not taken for a done
one, malformed key sets, algorithm confusion, audience and token_use, plain HTTP refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.jwks import JwksVerifier, check_jwks_url
from gateway.keys import Role
from gateway.problems import Problem

CLIENT = "app-client-1"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwks_doc() -> dict[str, Any]:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return {"keys": [{**rsa_jwk, "kid": "rsa-1", "use": "sig"}]}


@dataclass
class Issuer:
    url: str
    hits: int = 0
    delay_s: float = 0.0
    answers: list[tuple[int, Any]] = field(default_factory=list)  # (status, body) before the JWKS


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    state = Issuer("")

    async def serve(request: web.Request) -> web.Response:
        state.hits += 1
        await asyncio.sleep(state.delay_s)
        if state.answers:
            status, body = state.answers.pop(0)
            return web.Response(status=status, text=body if isinstance(body, str) else json.dumps(body))
        return web.json_response(jwks_doc())

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/jwks.json"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def verifier(issuer: Issuer, session: aiohttp.ClientSession, **kw: Any) -> JwksVerifier:
    return JwksVerifier(
        issuer.url,
        issuer=None,
        audience=CLIENT,
        role_claim="cognito:groups",
        session=session,
        allow_loopback_http=True,
        **kw,
    )


def token(key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa-1", **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "u1", "exp": now + 300, "token_use": "access", "client_id": CLIENT, **claims}
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid}
    )


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(alg: str, sign: Callable[[bytes], bytes] = lambda _: b"") -> str:
    now = int(time.time())
    head = b64(json.dumps({"alg": alg, "kid": "rsa-1", "typ": "JWT"}).encode())
    body = b64(
        json.dumps({"sub": "u1", "exp": now + 300, "token_use": "access", "client_id": CLIENT}).encode()
    )
    return f"{head}.{body}.{b64(sign(f'{head}.{body}'.encode()))}"


async def status_of(v: JwksVerifier, tok: str) -> int:
    try:
        await v.verify(tok)
    except Problem as p:
        return p.status
    return 200


async def test_concurrent_first_tokens_share_one_fetch_and_all_pass(
    issuer: Issuer, session: aiohttp.ClientSession
) -> None:
    """Was: the fetch marked itself done before it succeeded; the others got 401 meanwhile."""
    issuer.delay_s = 0.3
    v = verifier(issuer, session)
    results = await asyncio.gather(*(status_of(v, token()) for _ in range(5)))
    assert results == [200] * 5 and issuer.hits == 1


async def test_a_failed_fetch_is_503_and_retried_soon_not_30_s_of_401(
    issuer: Issuer, session: aiohttp.ClientSession
) -> None:
    issuer.answers = [(500, "down")]
    v = verifier(issuer, session, retry_s=0.2)
    assert await status_of(v, token()) == 503
    assert await status_of(v, token()) == 503  # within retry_s: no new fetch
    assert issuer.hits == 1
    await asyncio.sleep(0.25)
    assert await status_of(v, token()) == 200


@pytest.mark.parametrize(
    "body", ['{"keys": "nope"}', '{"keys": [{"kty": "RSA"}]}', "[1, 2]", "not json", "{}"]
)
async def test_a_malformed_jwks_is_503_never_an_error(
    issuer: Issuer, session: aiohttp.ClientSession, body: str
) -> None:
    issuer.answers = [(200, body)]
    with pytest.raises(Problem) as refused:
        await verifier(issuer, session).verify(token())
    assert refused.value.status == 503 and refused.value.headers["Retry-After"]


async def test_other_algorithms_on_the_rsa_key_are_401(
    issuer: Issuer, session: aiohttp.ClientSession
) -> None:
    v = verifier(issuer, session)
    assert await status_of(v, token()) == 200
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs256 = unsigned("HS256", lambda msg: hmac.new(public_pem, msg, hashlib.sha256).digest())
    for bad in (
        token(EC_KEY, "ES256"),  # an ES256 header on the RSA kid: was a 500
        unsigned("none"),
        unsigned("None"),
        hs256,  # HS256 "signed" with the public key
        token(kid="unknown-kid"),
    ):
        assert await status_of(v, bad) == 401, bad


async def test_the_token_must_be_for_this_client(issuer: Issuer, session: aiohttp.ClientSession) -> None:
    v = verifier(issuer, session)
    assert await status_of(v, token()) == 200  # an access token: client_id
    assert await status_of(v, token(token_use="id", client_id=None, aud=CLIENT)) == 200  # an id token: aud
    assert await status_of(v, token(token_use=None, client_id=None, aud=[CLIENT, "x"])) == 200
    for bad in (
        token(client_id="another-app"),
        token(token_use="access", client_id=None, aud=CLIENT),  # an access token names its client_id
        token(token_use="id", client_id=None, aud="another-app"),
        token(token_use=None, client_id=None),
        token(token_use="refresh"),
    ):
        assert await status_of(v, bad) == 401
    claims = await v.verify(token(**{"cognito:groups": ["ingest", "unknown"]}))
    assert claims.roles == {Role.INGEST} and claims.client_id == CLIENT


def test_plain_http_jwks_is_refused_except_loopback_when_allowed() -> None:
    check_jwks_url(
        "https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json", allow_loopback_http=False
    )
    check_jwks_url("http://127.0.0.1:9/jwks.json", allow_loopback_http=True)
    check_jwks_url("http://[::1]:9/jwks.json", allow_loopback_http=True)
    for url, allow in (
        ("http://127.0.0.1:9/jwks.json", False),
        ("http://issuer.example/jwks.json", True),
        ("http://127.0.0.1.evil.example/jwks.json", True),
        ("ftp://127.0.0.1/jwks.json", True),
        ("https:///jwks.json", False),
    ):
        with pytest.raises(ValueError):
            check_jwks_url(url, allow_loopback_http=allow)


def test_an_audience_is_required() -> None:
    with pytest.raises(ValueError):
        JwksVerifier("https://x.example/j", issuer=None, audience="", role_claim="r", session=None)  # type: ignore[arg-type]
