"""The HTTP routes: /v1 reads, /v1/events, health, metrics, the OpenAPI file and the demo page.
Handlers validate input, call the Reads / EventPublisher parts and shape JSON; who may call a
route is declared on it (``ACCESS``) and enforced by the app's middleware."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from gateway.auth import Principal, require
from gateway.events import EventBatch, check_types, to_record
from gateway.keys import INGEST_ROLES, READ_ROLES, Role
from gateway.parts import Parts
from gateway.problems import Problem, bad_request
from gateway.publisher import EventsNotAcceptedError

# whole values (fullmatch: `$` would let a trailing newline through)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:@.+-]{0,127}")
# categories are genre names: MovieLens has "Children's", "Film-Noir", "(no genres listed)"
_CATEGORY = re.compile(r"[A-Za-z0-9(][A-Za-z0-9 _:@.+'&(),-]{0,63}")
PARTS: web.AppKey[Parts] = web.AppKey("parts", Parts)
PUBLIC = frozenset[Role]()  # no key needed
ACCESS: dict[str, frozenset[Role]] = {}  # route name -> roles allowed (absent: public)


def json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None and ".." not in value


def valid_category(value: str) -> bool:
    return _CATEGORY.fullmatch(value) is not None and ".." not in value


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not valid_id(value):
        raise bad_request(
            f"{name} {value[:64]!r} is not a valid id (letters, digits, _:@.+-; no '/' or '..')"
        )
    return value


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise bad_request(f"query parameter {name} must be an integer from {lo} to {hi}")
    return int(raw)


def _paging(request: web.Request) -> tuple[int, int, str | None]:
    category = request.query.get("category") or None
    if category is not None and not valid_category(category):
        raise bad_request("query parameter category is not a valid category name")
    return _int(request, "n", 10, 1, 100), _int(request, "offset", 0, 0, 1000), category


def principal(request: web.Request) -> Principal:
    p: Principal = request["principal"]
    return p


async def recommendations(request: web.Request) -> web.Response:
    user = path_id(request, "user")
    require(principal(request), READ_ROLES, user)
    n, offset, category = _paging(request)
    return json(await request.app[PARTS].reads.recommend(user, n, offset, category))


async def similar(request: web.Request) -> web.Response:
    item = path_id(request, "item")
    n, offset, category = _paging(request)
    return json(await request.app[PARTS].reads.similar(item, n, offset, category))


async def popular(request: web.Request) -> web.Response:
    n, offset, category = _paging(request)
    return json(await request.app[PARTS].reads.listing("popular", n, offset, category))


async def latest(request: web.Request) -> web.Response:
    n, offset, category = _paging(request)
    return json(await request.app[PARTS].reads.listing("latest", n, offset, category))


async def post_events(request: web.Request) -> web.Response:
    parts = request.app[PARTS]
    if request.content_type != "application/json":
        raise Problem(415, "unsupported-media-type", "send the events as application/json")
    raw = await request.read()
    try:
        batch = EventBatch.model_validate_json(raw)
    except ValidationError as invalid:
        found = [{"loc": list(err["loc"]), "msg": err["msg"]} for err in invalid.errors(include_input=False)]
        raise bad_request("the events are not valid", errors=found[:50]) from None
    if len(batch.events) > parts.max_events:
        raise Problem(413, "too-many-events", f"at most {parts.max_events} events per request")
    if errors := check_types(batch, parts.event_types):
        raise bad_request("unknown event types", errors=errors[:50])
    who = principal(request)
    for event in batch.events:
        require(who, INGEST_ROLES, event.user)
    now = datetime.now(UTC)
    try:  # 202 only once accepted
        await parts.publisher.put([to_record(ev, now) for ev in batch.events])
    except EventsNotAcceptedError:
        raise Problem(
            503,
            "events-not-accepted",
            "the events stream did not accept the events; send the batch again",
            headers={"Retry-After": "1"},
        ) from None
    by_user: dict[str, list[str]] = {}
    for event in batch.events:
        by_user.setdefault(event.user, []).append(event.item)
        parts.metrics.events.labels(event.type).inc()
    for user, items in by_user.items():
        parts.reads.acted(user, items)
    return json({"accepted": len(batch.events)}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    parts = request.app[PARTS]
    checks = await parts.readiness()
    return json(
        {"ready": all(checks.values()), "checks": checks}, status=200 if all(checks.values()) else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[PARTS].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status_data(request: web.Request) -> web.Response:
    """The status page's document: readings, verdict and the hour's points (admin)."""
    board = request.app[PARTS].status
    if board is None:
        raise Problem(404, "no-status", "no status source: set gateway.status_url")
    try:
        return json(await board())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        raise Problem(
            503,
            "status-unavailable",
            "the status exporter (gorse-cdc status --serve-metrics) does not answer",
            headers={"Retry-After": "5"},
        ) from None


def _static(name: str) -> bytes:
    return resources.files("gateway").joinpath("static", name).read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_static("openapi.yaml"), content_type="application/yaml")


async def demo_page(request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html")


async def demo_script(request: web.Request) -> web.Response:
    return web.Response(body=_static("app.js"), content_type="text/javascript")


async def demo_style(request: web.Request) -> web.Response:
    return web.Response(body=_static("app.css"), content_type="text/css")


async def status_page(request: web.Request) -> web.Response:
    return web.Response(body=_static("status.html"), content_type="text/html")


async def status_script(request: web.Request) -> web.Response:
    return web.Response(body=_static("status.js"), content_type="text/javascript")


async def status_style(request: web.Request) -> web.Response:
    return web.Response(body=_static("status.css"), content_type="text/css")


def add_routes(app: web.Application) -> None:
    table = [
        ("GET", "/v1/users/{user}/recommendations", recommendations, "recommendations", READ_ROLES),
        ("GET", "/v1/items/{item}/similar", similar, "similar", READ_ROLES),
        ("GET", "/v1/popular", popular, "popular", READ_ROLES),
        ("GET", "/v1/latest", latest, "latest", READ_ROLES),
        ("POST", "/v1/events", post_events, "events", INGEST_ROLES),
        ("GET", "/metrics", metrics, "metrics", frozenset({Role.ADMIN})),
        ("GET", "/v1/status", status_data, "status", frozenset({Role.ADMIN})),
        ("GET", "/status", status_page, "status-page", PUBLIC),  # the data behind it is admin only
        ("GET", "/status.js", status_script, "status-script", PUBLIC),
        ("GET", "/status.css", status_style, "status-style", PUBLIC),
        ("GET", "/healthz", healthz, "healthz", PUBLIC),
        ("GET", "/readyz", readyz, "readyz", PUBLIC),
        ("GET", "/openapi.yaml", openapi, "openapi", PUBLIC),
        ("GET", "/", demo_page, "demo", PUBLIC),
        ("GET", "/app.js", demo_script, "demo-script", PUBLIC),
        ("GET", "/app.css", demo_style, "demo-style", PUBLIC),
    ]
    for method, path, handler, name, roles in table:
        app.router.add_route(method, path, handler, name=name)
        if roles:
            ACCESS[name] = roles
