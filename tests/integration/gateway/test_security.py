"""The gateway's refusals, against a real gateway process on the real stack: every one is an
application/problem+json with the right status, and no key ever reaches a log line."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.gateway.conftest import CORS_ORIGIN, KID, Gateway, Issuer, free_port

PROBLEM = "application/problem+json"


async def call(
    gw: Gateway, method: str, path: str, *, key: str | None = None, token: str | None = None, **kw: Any
) -> tuple[int, dict[str, str], Any]:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["X-API-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, gw.url + path, headers=headers, ssl=gw.ssl(), **kw) as r,
    ):
        body = await r.json(content_type=None) if r.content_length != 0 else None
        return r.status, dict(r.headers), body


def key(gw: Gateway, name: str) -> str:
    return str(gw.keys[name]["key"])


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith(PROBLEM)
    assert body["status"] == expected and body["detail"]


EVENT = {"events": [{"user": "sec-u1", "item": "sec-i1", "type": "play"}]}


async def test_a_reader_key_reads_and_every_missing_or_wrong_key_is_refused(gateway: Gateway) -> None:
    status, _, body = await call(gateway, "GET", "/v1/latest?n=3", key=key(gateway, "reader"))
    assert status == 200 and "items" in body
    status, headers, body = await call(gateway, "GET", "/v1/latest")
    assert_problem(status, headers, body, 401)
    assert "WWW-Authenticate" in headers
    reader = key(gateway, "reader")
    wrong_secret = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
    for bad in (wrong_secret, "not-a-key", "gcdc_000000000000_" + "x" * 43):
        assert_problem(*await call(gateway, "GET", "/v1/latest", key=bad), 401)
    assert_problem(*await call(gateway, "GET", "/v1/latest", headers={"Authorization": "Basic abc"}), 401)


async def test_a_revoked_key_is_refused_at_once(gateway: Gateway) -> None:
    k = gateway.create_key("to-revoke", "reader")
    assert (await call(gateway, "GET", "/v1/latest", key=k["key"]))[0] == 200
    out = gateway.cli("keys", "revoke", k["key_id"])
    assert k["key_id"] in out
    assert_problem(*await call(gateway, "GET", "/v1/latest", key=k["key"]), 401)
    listing = gateway.cli("keys", "list", "--json")
    assert k["key_id"] in listing and k["key"] not in listing and "key_hash" not in listing


async def test_roles_reader_cannot_ingest_ingest_cannot_read_only_admin_sees_metrics(
    gateway: Gateway,
) -> None:
    assert_problem(*await call(gateway, "POST", "/v1/events", key=key(gateway, "reader"), json=EVENT), 403)
    assert_problem(*await call(gateway, "GET", "/v1/latest", key=key(gateway, "ingest")), 403)
    assert_problem(*await call(gateway, "GET", "/metrics", key=key(gateway, "reader")), 403)
    assert (await call(gateway, "POST", "/v1/events", key=key(gateway, "ingest"), json=EVENT))[0] == 202
    async with (
        aiohttp.ClientSession() as s,
        s.get(gateway.url + "/metrics", headers={"X-API-Key": key(gateway, "admin")}, ssl=gateway.ssl()) as r,
    ):
        text = await r.text()
    assert r.status == 200
    assert 'gorse_cdc_gateway_requests_total{role="ingest",route="latest",status="403"} 1.0' in text
    assert 'gorse_cdc_gateway_requests_total{role="reader",route="events",status="403"} 1.0' in text
    assert (
        'gorse_cdc_gateway_key_requests_total{{key_id="{}"}}'.format(gateway.keys["ingest"]["key_id"]) in text
    )


async def test_a_user_token_reads_only_its_own_user(gateway: Gateway, issuer: Issuer) -> None:
    mine = issuer.token("tok-u1")
    assert (await call(gateway, "GET", "/v1/users/tok-u1/recommendations", token=mine))[0] == 200
    assert_problem(*await call(gateway, "GET", "/v1/users/tok-u2/recommendations", token=mine), 403)
    # its own events yes, another user's no; a plain reader token cannot ingest at all
    ingest_token = issuer.token("tok-u1", groups=["reader", "ingest"])
    ok = {"events": [{"user": "tok-u1", "item": "i1", "type": "play"}]}
    other = {"events": [{"user": "tok-u2", "item": "i1", "type": "play"}]}
    assert (await call(gateway, "POST", "/v1/events", token=ingest_token, json=ok))[0] == 202
    assert_problem(*await call(gateway, "POST", "/v1/events", token=ingest_token, json=other), 403)
    assert_problem(*await call(gateway, "POST", "/v1/events", token=mine, json=ok), 403)
    for bad in (
        issuer.token("tok-u1", ttl_s=-60),
        issuer.token("tok-u1", unknown=True),
        mine[:-6] + "AAAAAA",
    ):
        assert_problem(*await call(gateway, "GET", "/v1/users/tok-u1/recommendations", token=bad), 401)


async def test_over_the_limit_is_429_with_retry_after(gateway: Gateway) -> None:
    k = gateway.create_key("slow", "reader", rate=1, burst=3)
    results = await asyncio.gather(*(call(gateway, "GET", "/v1/latest", key=k["key"]) for _ in range(8)))
    statuses = sorted(r[0] for r in results)
    assert statuses.count(200) == 3 and statuses.count(429) == 5, statuses
    limited = next(r for r in results if r[0] == 429)
    assert_problem(*limited, 429)
    assert int(limited[1]["Retry-After"]) >= 1
    await asyncio.sleep(1.1)
    assert (await call(gateway, "GET", "/v1/latest", key=k["key"]))[0] == 200


async def test_oversized_malformed_and_bad_ids_are_refused(gateway: Gateway) -> None:
    ingest = key(gateway, "ingest")
    big = b'{"events": [' + b",".join([b'{"user":"u","item":"i","type":"play"}'] * 3000) + b"]}"
    assert_problem(
        *await call(
            gateway, "POST", "/v1/events", key=ingest, data=big, headers={"Content-Type": "application/json"}
        ),
        413,
    )
    headers = {"Content-Type": "application/json"}
    assert_problem(
        *await call(gateway, "POST", "/v1/events", key=ingest, data=b"{not json", headers=headers), 400
    )
    for user in ("a/b", "..", "x..y", ""):
        body = {"events": [{"user": user, "item": "i1", "type": "play"}]}
        status, h, problem = await call(gateway, "POST", "/v1/events", key=ingest, json=body)
        assert_problem(status, h, problem, 400)
        assert problem["errors"][0]["loc"][:3] == ["events", 0, "user"]
    unknown = {"events": [{"user": "u1", "item": "i1", "type": "teleport"}]}
    assert_problem(*await call(gateway, "POST", "/v1/events", key=ingest, json=unknown), 400)
    assert_problem(
        *await call(
            gateway, "POST", "/v1/events", key=ingest, data=b"user=1", headers={"Content-Type": "text/plain"}
        ),
        415,
    )
    reader = key(gateway, "reader")
    async with aiohttp.ClientSession() as s:  # raw paths: the client must not normalise them
        for path in (
            "/v1/users/a%2Fb/recommendations",
            "/v1/users/../recommendations",
            "/v1/items/..%2Fx/similar",
        ):
            url = aiohttp.client.URL(gateway.url + path, encoded=True)
            async with s.get(url, headers={"X-API-Key": reader}, ssl=gateway.ssl()) as r:
                assert r.status == 400, (path, await r.text())
        for query in ("n=0", "n=abc", "offset=-1", "category=a/b"):
            async with s.get(
                gateway.url + "/v1/latest?" + query, headers={"X-API-Key": reader}, ssl=gateway.ssl()
            ) as r:
                assert r.status == 400, query


async def test_plain_http_is_refused_when_tls_is_on(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.get(
                f"http://127.0.0.1:{gateway.port}/healthz", timeout=aiohttp.ClientTimeout(total=5)
            ) as r:
                await r.read()
        # and the certificate is the stack CA's, valid for 127.0.0.1
        async with s.get(gateway.url + "/healthz", ssl=gateway.ssl()) as r:
            assert r.status == 200


async def test_cors_for_allowed_origins_only(gateway: Gateway) -> None:
    status, headers, _ = await call(gateway, "GET", "/healthz", headers={"Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


async def test_unknown_routes_and_methods_are_problems_and_the_openapi_file_is_served(
    gateway: Gateway,
) -> None:
    import yaml

    assert_problem(*await call(gateway, "GET", "/v1/nope", key=key(gateway, "reader")), 404)
    assert_problem(*await call(gateway, "DELETE", "/v1/events", key=key(gateway, "admin")), 405)
    async with aiohttp.ClientSession() as s, s.get(gateway.url + "/openapi.yaml", ssl=gateway.ssl()) as r:
        spec = yaml.safe_load(await r.text())
    assert r.status == 200
    assert {"/v1/users/{user}/recommendations", "/v1/events", "/v1/popular"} <= set(spec["paths"])


async def test_gorse_unreachable_is_503_with_retry_after_and_not_ready(
    gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second gateway whose Gorse URL points at a closed loopback port (a real refused
    connection): reads answer 503 problems, /readyz says which check fails."""
    env = {**gateway.env, "GORSE_CDC_GORSE__URL": f"http://127.0.0.1:{free_port()}"}
    other = Gateway(gateway.settings, env, free_port(), tmp_path_factory.mktemp("down") / "gateway.log")
    other.keys = gateway.keys
    other.start()
    try:
        status, headers, body = await call(
            other, "GET", "/v1/users/u1/recommendations", key=key(gateway, "reader")
        )
        assert_problem(status, headers, body, 503)
        assert int(headers["Retry-After"]) >= 1
        status, _, body = await call(other, "GET", "/readyz")
        assert status == 503 and body["checks"]["gorse"] is False and body["checks"]["keys"] is True
    finally:
        other.stop()


async def test_cors_preflight_and_reads_for_an_allowed_origin(gateway: Gateway) -> None:
    preflight = {"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "GET"}
    preflight["Access-Control-Request-Headers"] = "x-api-key"
    async with (
        aiohttp.ClientSession() as s,
        s.options(gateway.url + "/v1/latest", headers=preflight, ssl=gateway.ssl()) as r,
    ):
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
        assert "GET" in r.headers["Access-Control-Allow-Methods"]
        assert "X-API-Key" in r.headers["Access-Control-Allow-Headers"]
        assert r.headers["Vary"] == "Origin"
    status, headers, _ = await call(
        gateway, "GET", "/v1/latest", key=key(gateway, "reader"), headers={"Origin": CORS_ORIGIN}
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    # a refusal carries it too (the app can read the problem), an unknown origin never
    status, headers, _ = await call(gateway, "GET", "/v1/latest", headers={"Origin": CORS_ORIGIN})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    evil = {**preflight, "Origin": "https://evil.example"}
    async with (
        aiohttp.ClientSession() as s,
        s.options(gateway.url + "/v1/latest", headers=evil, ssl=gateway.ssl()) as r,
    ):
        assert "Access-Control-Allow-Origin" not in r.headers


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_hs256_none_and_foreign_client_tokens_are_refused(gateway: Gateway, issuer: Issuer) -> None:
    """The algorithm is the key's, never the token's: HS256 "signed" with the JWKS's public key
    and an unsigned token are 401; so is a valid signature for another app client."""
    mine = issuer.token("tok-u1")
    assert (await call(gateway, "GET", "/v1/users/tok-u1/recommendations", token=mine))[0] == 200
    _, claims, _ = mine.split(".")
    pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = []
    for alg in ("HS256", "none", "NONE"):
        head = _b64(json.dumps({"alg": alg, "kid": KID, "typ": "JWT"}).encode())
        sig = hmac.new(pem, f"{head}.{claims}".encode(), hashlib.sha256).digest() if alg == "HS256" else b""
        forged.append(f"{head}.{claims}.{_b64(sig)}")
    for bad in (*forged, issuer.token("tok-u1", client_id="another-app-client")):
        assert_problem(*await call(gateway, "GET", "/v1/users/tok-u1/recommendations", token=bad), 401)


async def test_ids_are_matched_whole_and_genre_names_are_categories(gateway: Gateway) -> None:
    reader = key(gateway, "reader")
    async with aiohttp.ClientSession() as s:
        for path in ("/v1/users/u1%0A/recommendations", "/v1/items/m1%0A/similar"):
            url = aiohttp.client.URL(gateway.url + path, encoded=True)
            async with s.get(url, headers={"X-API-Key": reader}, ssl=gateway.ssl()) as r:
                assert r.status == 400, (path, await r.text())  # was: accepted (`$` before "\n")
        for query in ("category=Children%27s", "category=Film-Noir", "category=%28no+genres+listed%29"):
            async with s.get(
                gateway.url + "/v1/latest?" + query, headers={"X-API-Key": reader}, ssl=gateway.ssl()
            ) as r:
                assert r.status == 200, (query, await r.text())  # was: 400 for Children's


async def test_every_answer_forbids_framing_and_sniffing_and_the_page_has_a_csp(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        for path, expected in (("/", 200), ("/app.js", 200), ("/healthz", 200), ("/v1/latest", 401)):
            async with s.get(gateway.url + path, ssl=gateway.ssl()) as r:
                assert r.status == expected, path
                csp = r.headers["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
                assert "unsafe-inline" not in csp
                assert r.headers["X-Frame-Options"] == "DENY"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with s.get(gateway.url + "/", ssl=gateway.ssl()) as r:
            page = await r.text()
        assert '<script src="/app.js">' in page and "<script>" not in page


async def test_no_key_in_any_log_line(gateway: Gateway) -> None:
    """Last in this module: every key made and used above must be absent from the gateway's and
    the CLI's log lines (the access log carries the key id only)."""
    text = gateway.log.read_text()
    assert '"key_id": "' in text or "key_id=" in text or gateway.keys["reader"]["key_id"] in text
    for k in gateway.keys.values():
        secret = str(k["key"]).split("_", 2)[2]  # the whole secret (it may hold "_" itself)
        assert k["key"] not in text and secret not in text
