"""Builds the shared apply path (clients, Gorse sink, dead-letter store, applier) from the
settings. Used by the live consumer and by the replay tool, so both write the same way."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from consumers.deadletter_stores import S3DeadLetterStore, SqsDeadLetterStore
from consumers.metrics import Metrics
from consumers.pipeline import BatchApplier
from consumers.protocols import DeadLetterStore, Sink
from consumers.sink.gorse_sink import GorseSink
from consumers.sink.item_cache import ItemLabelCache
from gorse_cdc.gorse.client import GorseClient
from gorse_cdc.mapping import Mapper, load_spec
from gorse_cdc.settings import Settings


def build_mapper(settings: Settings) -> Mapper:
    return Mapper(load_spec(settings.mapping.path), settings.mapping.zip_privacy)


@dataclass
class Clients:
    kinesis: Any
    dynamodb: Any
    s3: Any
    sqs: Any
    gorse: GorseClient


async def open_clients(stack: contextlib.AsyncExitStack, settings: Settings, metrics: Metrics) -> Clients:
    session: Any = get_session()
    config = AioConfig(max_pool_connections=64, retries={"max_attempts": 2, "mode": "standard"})

    async def client(service: str) -> Any:
        return await stack.enter_async_context(
            session.create_client(service, config=config, **settings.aws_client_kwargs(service))
        )

    gorse = await stack.enter_async_context(
        GorseClient.from_settings(settings, observe_latency=metrics.observe_gorse)
    )
    return Clients(
        await client("kinesis"), await client("dynamodb"), await client("s3"), await client("sqs"), gorse
    )


def dead_letter_store(settings: Settings, clients: Clients) -> DeadLetterStore:
    s3 = S3DeadLetterStore(clients.s3, settings.s3.bucket, settings.dead_letters.s3_prefix)
    if settings.dead_letters.kind == "sqs":
        return SqsDeadLetterStore(clients.sqs, settings.dead_letters.sqs_queue, overflow=s3)
    return s3


def gorse_sink(settings: Settings, clients: Clients, mapper: Mapper) -> GorseSink:
    c = settings.consumer
    cache = ItemLabelCache(
        clients.gorse,
        mapper,
        max_items=c.item_cache_size,
        ttl_s=c.item_cache_ttl_s,
        concurrency=c.gorse_concurrency,
    )
    return GorseSink(clients.gorse, mapper, concurrency=c.gorse_concurrency, cache=cache)


def build_applier(
    settings: Settings,
    clients: Clients,
    metrics: Metrics,
    *,
    source_name: str,
    sink: Sink | None = None,
    dead_letters: DeadLetterStore | None = None,
) -> BatchApplier:
    mapper = build_mapper(settings)
    return BatchApplier(
        mapper,
        sink or gorse_sink(settings, clients, mapper),
        dead_letters or dead_letter_store(settings, clients),
        metrics,
        source_name=source_name,
    )
