"""The aiohttp application: middlewares (security headers, problems, access log and metrics,
CORS, body size, failed-authentication limit per address, authentication, roles, rate limits)
around the routes. ``make_app`` takes ready-made parts."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.auth import require
from gateway.parts import Parts
from gateway.problems import CONTENT_TYPE, Problem, too_many
from gateway.routes import ACCESS, PARTS, add_routes

log = logging.getLogger("gateway.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORS_HEADERS = "Authorization, Content-Type, X-API-Key"
# the demo page loads its script and style from the gateway itself and calls only the gateway
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _route(request: web.Request) -> str:
    route = request.match_info.route
    return route.name or "unmatched" if route.resource is not None else "unmatched"


def _problem_response(p: Problem, request: web.Request) -> web.Response:
    return web.Response(
        body=p.body(request.path[:200]), status=p.status, headers={"Content-Type": CONTENT_TYPE, **p.headers}
    )


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Problems rendered; every request counted (route, status, role) and logged with the key's
    id, never the key, and the worker process that served it."""
    parts = request.app[PARTS]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Problem as p:
        response = _problem_response(p, request)
    except web.HTTPException as e:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(e.status, "error")
        detail = e.reason if e.status != 413 else f"the body is larger than {parts.max_body_bytes} bytes"
        response = _problem_response(Problem(e.status, slug, detail), request)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, _route(request))
        response = _problem_response(Problem(500, "internal", "an internal error occurred"), request)
    elapsed = time.perf_counter() - started
    route, who = _route(request), request.get("principal")
    role = who.role_label if who is not None else "none"
    parts.metrics.requests.labels(route, str(response.status), role).inc()
    parts.metrics.latency.labels(route).observe(elapsed)
    if who is not None:
        parts.metrics.key_requests.labels("jwt" if who.subject is not None else who.ident).inc()
    log.info(
        "%s %s %d %.1f ms",
        request.method,
        route,
        response.status,
        elapsed * 1000,
        extra={
            "event": "access",
            "route": route,
            "status": response.status,
            "key_id": who.ident if who else None,
            "worker": os.getpid(),
        },
    )
    return response


def client_address(request: web.Request, forwarded_hops: int) -> str:
    """The caller's address: the peer, or behind ``forwarded_hops`` proxies that each append
    the address they saw to X-Forwarded-For, the entry the outermost one appended (entries
    further left are the client's to write, never trusted)."""
    if forwarded_hops > 0:
        seen = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(seen) >= forwarded_hops:
            return seen[-forwarded_hops]
    return request.remote or "unknown"


@web.middleware
async def secure_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)  # `observe` inside turns every error into a response
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[PARTS].cors_origins
    if request.method == "OPTIONS" and allowed and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = origin or ""
        response.headers["Vary"] = "Origin"
    return response


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Body size (413 before reading), authentication (401; an address past its failures gets
    429 for any key not already cached, before any table read), role (403), rate limit (429)."""
    parts = request.app[PARTS]
    if (request.content_length or 0) > parts.max_body_bytes:
        raise Problem(413, "payload-too-large", f"the body is larger than {parts.max_body_bytes} bytes")
    roles = ACCESS.get(_route(request))
    if roles is None:
        return await handler(request)
    address = client_address(request, parts.forwarded_hops)
    rate, burst = parts.auth_failures
    now = time.monotonic()
    failing = parts.failures.wait(address, rate, burst, now) > 0
    try:
        who = await parts.auth.authenticate(
            request.headers.get("X-API-Key"), request.headers.get("Authorization"), lookups=not failing
        )
    except Problem as p:
        if p.status == 401:
            parts.failures.take(address, rate, burst, now)
        elif p.status == 429:
            parts.metrics.rate_limited.labels("none").inc()
        raise
    request["principal"] = who
    require(who, roles)
    wait = parts.buckets.take(who.ident, who.rate_per_s, who.burst, time.monotonic())
    if wait > 0:
        parts.metrics.rate_limited.labels(who.role_label).inc()
        raise too_many(wait)
    return await handler(request)


def make_app(parts: Parts) -> web.Application:
    app = web.Application(
        middlewares=[secure_headers, cors, observe, guard], client_max_size=parts.max_body_bytes
    )
    app[PARTS] = parts
    add_routes(app)
    return app
