"""`gorse-cdc gateway serve` and `gorse-cdc gateway keys create|list|revoke`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import orjson

from gateway.keys import KeyRecord, Role
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser(
        "gateway",
        help="the secured API for OTT apps: recommendations out, engagement events in",
        description=(
            "An HTTPS API in front of Gorse: /v1 recommendations (blended with the user's latest "
            "actions, cached), similar items, popular and latest, enriched with titles and genres; "
            "POST /v1/events puts engagement events on their own Kinesis stream (settings.gateway."
            "events_stream) for the consumer (`gorse-cdc consume --stream gorse-cdc-events "
            "--lease-table gorse-cdc-events-leases`). API keys with roles and rate limits live "
            "hashed in DynamoDB; OAuth2/JWT bearer tokens optional (settings.gateway.jwks_url)."
        ),
    )
    gsub = g.add_subparsers(dest="gateway_command", required=True, metavar="ACTION")
    s = gsub.add_parser(
        "serve",
        help="serve the API (HTTPS; the local stack's CA signs a certificate when none is given)",
        description="Serve in settings.gateway.workers processes on one port until SIGTERM (which lets "
        "every worker finish its requests) or SIGINT (at once). OpenAPI at /openapi.yaml, demo page "
        "at /, /healthz, /readyz, /metrics (admin key; summed over the workers).",
    )
    s.add_argument("--port", type=int, help="default settings.gateway.port (+ stack offset locally)")
    s.add_argument("--insecure-http", action="store_true", help="plain HTTP (behind a TLS-terminating ALB)")
    s.add_argument(
        "--workers",
        type=int,
        help="worker processes on the port (default settings.gateway.workers; 0 = one per CPU)",
    )
    s.set_defaults(func=run_serve)

    k = gsub.add_parser("keys", help="create, list or revoke API keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    c = k.add_parser(
        "create",
        help="create a key (printed once; only its hash is stored)",
        epilog="Example: gorse-cdc gateway keys create --role reader --name tv-app --rate 100",
    )
    c.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role],
        help="reader: the /v1 reads; ingest: POST /v1/events; admin: both, and /metrics",
    )
    c.add_argument("--name", default="", help="who holds it (shown in listings)")
    c.add_argument(
        "--rate", type=float, help="requests per second (default settings.gateway.default_rate_per_s)"
    )
    c.add_argument("--burst", type=int, help="bucket size (default settings.gateway.default_burst)")
    c.add_argument("--json", action="store_true", help="print {key_id, key, role, ...} as JSON")
    c.set_defaults(func=run_keys_create)
    ls = k.add_parser("list", help="list keys (ids, roles, limits; never a key or hash)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_keys_list)
    r = k.add_parser("revoke", help="revoke a key by id (refused within settings.gateway.key_cache_ttl_s)")
    r.add_argument("key_id")
    r.set_defaults(func=run_keys_revoke)


async def _store_call(settings: Settings, action: str, args: argparse.Namespace) -> object:
    from gateway.wiring import key_store, open_aws

    async with open_aws(settings, "dynamodb") as (dynamodb,):
        store = key_store(settings, dynamodb)
        await store.ensure_table()
        if action == "create":
            g = settings.gateway
            rate = args.rate if args.rate is not None else g.default_rate_per_s
            burst = args.burst if args.burst is not None else g.default_burst
            if rate <= 0 or burst < 1:
                raise SystemExit("gorse-cdc gateway keys create: --rate must be > 0 and --burst >= 1")
            return await store.create(Role(args.role), rate, burst, args.name)
        if action == "list":
            return await store.list()
        return await store.revoke(args.key_id)


def run_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    created: tuple[KeyRecord, str] = asyncio.run(_store_call(settings, "create", args))  # type: ignore[assignment]
    rec, key = created
    if args.json:
        sys.stdout.write(orjson.dumps({**rec.public(), "key": key}).decode() + "\n")
    else:
        print(f"created {rec.role.value} key {rec.key_id} ({rec.rate_per_s:g}/s, burst {rec.burst})")
        print(f"key (shown once, store it now): {key}")
    return 0


def run_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    records = asyncio.run(_store_call(settings, "list", args))
    rows = [r.public() for r in records]  # type: ignore[attr-defined]
    if args.json:
        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
        return 0
    print(f"{'key_id':14} {'role':7} {'rate/s':>8} {'burst':>6}  {'created':25} {'revoked':25} name")
    for r in rows:
        print(
            f"{r['key_id']:14} {r['role']:7} {r['rate_per_s']:>8g} {r['burst']:>6}  "
            f"{r['created_at'][:25]:25} {(r['revoked_at'] or '-')[:25]:25} {r['name']}"
        )
    return 0


def run_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    rec = asyncio.run(_store_call(settings, "revoke", args))
    print(f"revoked {rec.key_id} at {rec.revoked_at.isoformat()}")  # type: ignore[attr-defined]
    return 0


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.server import serve

    port = args.port if args.port is not None else settings.gateway_port
    if args.workers is not None:
        if args.workers < 0:
            raise SystemExit("gorse-cdc gateway serve: --workers must be >= 0")
        settings.gateway.workers = args.workers
    return serve(settings, port, tls=settings.gateway.tls and not args.insecure_http)
