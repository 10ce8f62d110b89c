"""Turns the settings into the gateway's connected parts (the only place that does): the
DynamoDB key store, the Gorse client, the Kinesis publisher, the JWKS verifier, the caches."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from gateway.auth import Authenticator
from gateway.jwks import JwksVerifier
from gateway.keystore import KeyStore
from gateway.metrics import GatewayMetrics
from gateway.parts import Parts
from gateway.publisher import EventPublisher
from gateway.reads import ReadConfig, Reads
from gorse_cdc.errors import FatalError
from gorse_cdc.gorse.client import GorseClient
from gorse_cdc.mapping import load_spec
from gorse_cdc.settings import Settings


def read_config(settings: Settings) -> ReadConfig:
    g = settings.gateway
    return ReadConfig(
        cache_ttl_s=g.cache_ttl_s,
        fresh_ttl_s=g.fresh_ttl_s,
        item_ttl_s=g.item_ttl_s,
        cache_size=g.cache_size,
        depth=g.rec_depth,
        positive_types=frozenset(g.positive_feedback_types),
        popular=g.popular_recommender,
        genres_label=g.genres_label,
        # interactive reads: a few seconds, never Gorse's bulk-write timeout (30 s by default)
        deadline_s=min(3.0, settings.gorse.timeout_s),
    )


@contextlib.asynccontextmanager
async def open_aws(settings: Settings, *services: str) -> AsyncIterator[list[Any]]:
    session: Any = get_session()
    config = AioConfig(max_pool_connections=64, retries={"max_attempts": 3, "mode": "standard"})
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                session.create_client(s, config=config, **settings.aws_client_kwargs(s))
            )
            for s in services
        ]


def key_store(settings: Settings, dynamodb: Any) -> KeyStore:
    pepper = settings.gateway.key_pepper.get_secret_value().encode()
    return KeyStore(dynamodb, settings.gateway.keys_table, pepper)


@contextlib.asynccontextmanager
async def open_parts(settings: Settings, metrics_dir: Path | None = None) -> AsyncIterator[Parts]:
    """``metrics_dir``: the workers' shared Prometheus folder (gateway.server), if any."""
    g = settings.gateway
    metrics = GatewayMetrics(shared_dir=metrics_dir)
    spec = load_spec(settings.mapping.path)
    event_types = frozenset(spec.events.types) if spec.events else frozenset()
    async with contextlib.AsyncExitStack() as stack:
        dynamodb, kinesis = await stack.enter_async_context(open_aws(settings, "dynamodb", "kinesis"))
        gorse = await stack.enter_async_context(GorseClient.from_settings(settings, observe_latency=None))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        jwks = None
        if g.jwks_url:
            if not g.jwt_audience:
                raise FatalError("gateway.jwt_audience (the app client id) must be set with gateway.jwks_url")
            try:
                jwks = JwksVerifier(
                    g.jwks_url,
                    issuer=g.jwt_issuer,
                    audience=g.jwt_audience,
                    role_claim=g.jwt_role_claim,
                    session=http,
                    allow_loopback_http=settings.local,  # a test issuer on loopback, never in AWS
                )
            except ValueError as e:
                raise FatalError(f"gateway.jwks_url: {e}") from None
        store = key_store(settings, dynamodb)
        auth = Authenticator(
            store,
            g.key_pepper.get_secret_value().encode(),
            cache_ttl_s=g.key_cache_ttl_s,
            jwks=jwks,
            default_rate=(g.default_rate_per_s, g.default_burst),
        )
        publisher = EventPublisher(kinesis, g.events_stream)

        async def gorse_ready() -> bool:
            await gorse.health()
            return True

        async def keys_ready() -> bool:
            await dynamodb.describe_table(TableName=g.keys_table)
            return True

        yield Parts(
            auth=auth,
            reads=Reads(
                gorse,
                read_config(settings),
                on_cache=metrics.cache_result,
                on_gorse_error=lambda e: metrics.gorse_errors.labels(str(e.status or "none")).inc(),
            ),
            publisher=publisher,
            metrics=metrics,
            event_types=event_types,
            max_events=g.max_events_per_batch,
            max_body_bytes=g.max_body_bytes,
            cors_origins=frozenset(g.cors_origins),
            # tls_self_signed: behind the ALB (gateway.yaml), which appends the caller to X-Forwarded-For
            forwarded_hops=1 if g.tls_self_signed else 0,
            checks={"gorse": gorse_ready, "keys": keys_ready, "events_stream": publisher.ready},
        )
