"""Builds the parts from the settings: clients, the shared apply path (Gorse sink, dead-letter
store, applier) used by the live consumer and the replay tool alike, and the live consumer
itself (open_consumer). The only module that turns settings into connected objects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from consumers.deadletter_stores import S3DeadLetterStore, SqsDeadLetterStore
from consumers.kinesis.fanout import FanOutReader, ensure_stream_consumer
from consumers.kinesis.reader import ShardReader, StartPosition
from consumers.kinesis.shards import list_shards
from consumers.leases.coordinator import call_timeout_s
from consumers.leases.lease import Lease
from consumers.leases.table import LeaseTable
from consumers.metrics import Metrics
from consumers.pipeline import BatchApplier
from consumers.protocols import DeadLetterStore, RecordSource, Sink
from consumers.service import Consumer, ConsumerParts
from consumers.sink.discard import DiscardSink
from consumers.sink.erasures import DynamoErasureLog
from consumers.sink.gorse_sink import GorseSink
from consumers.sink.item_cache import ItemLabelCache
from gorse_cdc.gorse.client import GorseClient
from gorse_cdc.mapping import Mapper, load_spec
from gorse_cdc.refresh_records import RefreshPublisher
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


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
    # the lease path (and the erasure log) must fail fast: a renewal stuck for botocore's 60 s
    # outlives the write deadline (consumers.leases.coordinator.call_timeout_s)
    timeout = call_timeout_s(settings.leases.failover_ms)
    fast = config.merge(AioConfig(connect_timeout=timeout, read_timeout=timeout))

    async def client(service: str) -> Any:
        cfg = fast if service == "dynamodb" else config
        return await stack.enter_async_context(
            session.create_client(service, config=cfg, **settings.aws_client_kwargs(service))
        )

    gorse = await stack.enter_async_context(
        GorseClient.from_settings(settings, observe_latency=metrics.observe_gorse)
    )
    limit = gorse.limit
    metrics.gorse_limit.set_function(
        lambda: limit.limit if limit is not None else settings.gorse.max_connections
    )
    return Clients(
        await client("kinesis"), await client("dynamodb"), await client("s3"), await client("sqs"), gorse
    )


def dead_letter_store(settings: Settings, clients: Clients) -> DeadLetterStore:
    s3 = S3DeadLetterStore(clients.s3, settings.s3.bucket, settings.dead_letters.s3_prefix)
    if settings.dead_letters.kind == "sqs":
        return SqsDeadLetterStore(clients.sqs, settings.dead_letters.sqs_queue, overflow=s3)
    return s3


def gorse_sink(
    settings: Settings,
    clients: Clients,
    mapper: Mapper,
    *,
    publish: bool = True,
    metrics: Metrics | None = None,
    tell_owners: bool = False,
) -> GorseSink:
    """``publish``: genre edits tell likers through refresh records (the live consumer); a
    replay, which holds the leases of every shard it writes, writes them itself.
    ``tell_owners``: a writer beside the live consumer without its leases (an archive replay or
    re-drive run --beside-live) tells the owners of the users it wrote (reread records)."""
    c = settings.consumer
    refused = metrics.events_refused_erased.inc if metrics is not None else None
    cache = ItemLabelCache(
        clients.gorse,
        mapper,
        max_items=c.item_cache_size,
        ttl_s=c.item_cache_ttl_s,
        concurrency=c.gorse_concurrency,
    )
    # None when users are not partitioned by their id: records could not reach a user's shard
    records = refresh_publisher(settings, clients, mapper)
    publisher = records if publish else None
    # remembered likes are exact only while every other writer of a user's feedback can tell
    # the user's own shard (reread refresh records)
    remember = c.remember_likes and records is not None
    if c.remember_likes and not remember:
        log.warning("consumer.remember_likes is off: refresh records cannot reach a user's own shard")
    return GorseSink(
        clients.gorse,
        mapper,
        concurrency=c.gorse_concurrency,
        cache=cache,
        demographics_ttl_s=c.remembered_ttl_s,
        remembered_users=c.remembered_users,
        remembered_rows=c.remembered_feedback_rows,
        publisher=publisher,
        fan_out_records=publisher is not None and items_by_id(mapper),
        retell_after_s=c.item_cache_ttl_s + 1.0,  # every entry older than the edit has expired
        erasures=DynamoErasureLog(clients.dynamodb, c.erasures_table) if c.erasure_guard else None,
        on_refused_events=refused,
        remember_likes=remember,
        tell_owners=records.tell_rewritten if tell_owners and records is not None else None,
    )


def items_by_id(mapper: Mapper) -> bool:
    """Fan-out records (gorse_cdc.refresh_records) are read after the item's write only on the item's
    own shard: items must be partitioned by their id; otherwise likers are told in the plan
    that writes the item (unbounded)."""
    items = mapper.spec.table_for("item")
    if items is None or items[1].item is None:
        return False
    if items[1].partition_key != items[1].item.id:
        log.warning(
            "table %s is partitioned by %s, not by the item id: genre edits tell likers in one plan",
            items[0],
            items[1].partition_key,
        )
        return False
    return True


def refresh_publisher(settings: Settings, clients: Clients, mapper: Mapper) -> RefreshPublisher | None:
    """Refresh records reach a user's shard only if users are partitioned by their id (as the
    seed's mapping does); otherwise likers are written directly (see gorse_cdc.refresh_records)."""
    users, feedback = mapper.spec.table_for("user"), mapper.spec.table_for("feedback")
    if not users or users[1].user is None or mapper.liked_feedback_type is None:
        return None
    by_user = [(users[0], users[1].partition_key, users[1].user.id)]
    if feedback and feedback[1].feedback is not None:
        by_user.append((feedback[0], feedback[1].partition_key, feedback[1].feedback.user))
    for name, partition_key, user_column in by_user:
        if partition_key != user_column:
            log.warning(
                "table %s is partitioned by %s, not by the user id: genre edits refresh likers directly",
                name,
                partition_key,
            )
            return None
    return RefreshPublisher(clients.kinesis, settings.kinesis.stream_name)


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
    if settings.consumer.discard_writes:
        log.warning("consumer.discard_writes is on: NOTHING is written to Gorse (benchmarks only)")
        sink = DiscardSink()
    return BatchApplier(
        mapper,
        sink or gorse_sink(settings, clients, mapper),
        dead_letters or dead_letter_store(settings, clients),
        metrics,
        source_name=source_name,
    )


@contextlib.asynccontextmanager
async def open_consumer(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Consumer]:
    """The live consumer, wired from the settings: aiobotocore clients, the DynamoDB lease
    table, GetRecords (or enhanced fan-out) readers, the Gorse sink and the dead-letter store.
    The one place that builds a Consumer's parts for real."""
    metrics = metrics or Metrics()
    s = settings
    stream = s.kinesis.stream_name
    async with contextlib.AsyncExitStack() as stack:
        clients = await open_clients(stack, s, metrics)
        sink = gorse_sink(s, clients, build_mapper(s), metrics=metrics)
        applier = build_applier(s, clients, metrics, source_name=stream, sink=sink)
        retells = asyncio.create_task(sink.run_retells(), name="retell-likers")
        stack.callback(retells.cancel)
        consumer_arn = None
        if s.consumer.enhanced_fan_out:
            consumer_arn = await ensure_stream_consumer(
                clients.kinesis, stream, f"gorse-cdc-{s.leases.table}"
            )

        def source_for(lease: Lease) -> RecordSource:
            start = StartPosition.from_checkpoint(lease.checkpoint)
            if consumer_arn is not None:
                return FanOutReader(clients.kinesis, consumer_arn, lease.lease_key, start, metrics)
            return ShardReader(clients.kinesis, stream, lease.lease_key, start, metrics)

        async def gorse_ready() -> bool:
            try:
                await asyncio.wait_for(clients.gorse.health(), 2.0)
                return True
            except Exception:  # any failure means "not ready"; /readyz says so
                return False

        parts = ConsumerParts(
            leases=LeaseTable(clients.dynamodb, s.leases.table),
            list_shards=lambda: list_shards(clients.kinesis, stream),
            source_for=source_for,
            applier=applier,
            gorse_ready=gorse_ready,
            on_shards_taken=sink.shards_taken,
            blocked=lambda: applier.blocked,
            last_failure=applier.last_failure.get,
        )
        yield Consumer(s, parts, metrics=metrics)
