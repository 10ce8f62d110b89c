"""The consumer service: the one place where the parts are wired together.

Every failover/3 the loop lists the stream's shards, creates missing leases, renews the
held ones (stopping the shards whose lease was lost), takes leases (balancing) and starts a
ShardWorker for each new one. SIGTERM: the workers stop reading, flush and checkpoint their
current batch, the leases are released, and ``run`` returns within shutdown_timeout_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumers.health import HealthServer
from consumers.kinesis.fanout import FanOutReader, ensure_stream_consumer
from consumers.kinesis.pacing import PollPacer
from consumers.kinesis.reader import ShardReader, StartPosition
from consumers.kinesis.shards import list_shards
from consumers.leases.coordinator import LeaseCoordinator
from consumers.leases.lease import Lease
from consumers.leases.table import LeaseTable
from consumers.metrics import Metrics
from consumers.pipeline import BatchApplier
from consumers.protocols import RecordSource
from consumers.shard_worker import ShardState, ShardWorker
from consumers.wiring import build_applier, build_mapper, gorse_sink, open_clients
from gorse_cdc.errors import GorseRetriableError
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Consumer:
    def __init__(
        self,
        settings: Settings,
        *,
        stream_name: str | None = None,
        lease_table: str | None = None,
        worker_id: str | None = None,
        enhanced_fan_out: bool = False,
        metrics_port: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.stream = stream_name or settings.kinesis.stream_name
        self.lease_table_name = lease_table or settings.leases.table
        self.worker_id = worker_id or settings.consumer.worker_id or default_worker_id()
        self.enhanced_fan_out = enhanced_fan_out
        self.metrics_port = settings.consumer.metrics_port if metrics_port is None else metrics_port
        self.metrics = metrics or Metrics()
        self.workers: dict[str, tuple[ShardWorker, asyncio.Task[ShardState]]] = {}
        self.coordinator: LeaseCoordinator | None = None
        self._wake = asyncio.Event()
        self._on_shards_changed: Callable[[], None] = lambda: None

    # ---- wiring ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, s, self.metrics)
            kinesis, dynamodb, gorse = clients.kinesis, clients.dynamodb, clients.gorse
            sink = gorse_sink(s, clients, build_mapper(s))
            applier = build_applier(s, clients, self.metrics, source_name=self.stream, sink=sink)
            self._on_shards_changed = sink.liked.forget
            table = LeaseTable(dynamodb, self.lease_table_name)
            await table.ensure_table()
            self.coordinator = LeaseCoordinator(
                table,
                self.worker_id,
                failover_ms=s.leases.failover_ms,
                max_steal=s.leases.max_leases_to_steal,
            )
            consumer_arn = None
            if self.enhanced_fan_out:
                consumer_arn = await ensure_stream_consumer(
                    kinesis, self.stream, f"gorse-cdc-{self.lease_table_name}"
                )
            health = None
            if self.metrics_port:
                health = HealthServer(
                    self.metrics,
                    self._is_balancing,
                    lambda: self._gorse_ok(gorse),
                    host=self.settings.consumer.metrics_host,
                    port=self.metrics_port,
                )
                await health.start()
                stack.push_async_callback(health.stop)
            log.info("consumer started", extra={"worker": self.worker_id, "stream": self.stream})

            def source_for(lease: Lease) -> RecordSource:
                start = StartPosition.from_checkpoint(lease.checkpoint)
                if consumer_arn is not None:
                    return FanOutReader(kinesis, consumer_arn, lease.lease_key, start, self.metrics)
                return ShardReader(kinesis, self.stream, lease.lease_key, start, self.metrics)

            await self._loop(stop, kinesis, applier, source_for)
            await self._shutdown()
        return 0

    def _is_balancing(self) -> bool:
        c = self.coordinator
        if c is None or c.last_balance_at is None:
            return False
        return bool(c.held) or c.clock() - c.last_balance_at < c.failover_s

    async def _gorse_ok(self, gorse: GorseClient) -> bool:
        try:
            await asyncio.wait_for(gorse.health(), 2.0)
            return True
        except (GorseRetriableError, TimeoutError):
            return False
        except Exception:
            return False

    def _batch_limit(self) -> int:
        c = self.settings.consumer
        return max(1, min(c.max_records_per_call, c.max_in_flight_records // max(1, len(self.workers))))

    # ---- the loop ---------------------------------------------------------------------------------
    async def _loop(self, stop: asyncio.Event, kinesis: Any, applier: BatchApplier, source_for: Any) -> None:
        c = self.coordinator
        assert c is not None
        interval = c.failover_s / 3
        last_renewed = c.clock()
        while not stop.is_set():
            try:
                await c.sync_shards(await list_shards(kinesis, self.stream))
                for shard in await c.renew():
                    self._stop_worker(shard)
                last_renewed = c.clock()
                taken = await c.balance()
                if taken:  # users of newly held shards may have been written elsewhere
                    self._on_shards_changed()
                for lease in taken:
                    self._start_worker(lease, applier, source_for)
            except (ClientError, BotoCoreError, OSError) as e:
                log.warning("lease round failed: %s", e)
                if c.clock() - last_renewed > c.failover_s:  # others may own our leases by now
                    log.error("leases not renewed for the failover time: stopping every shard")
                    for shard in list(self.workers):
                        self._stop_worker(shard)
                        c.drop(shard)
            self._reap()
            self.metrics.leases_held.set(len(c.held))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop.wait(), self._wake.wait()), interval)

    def _start_worker(self, lease: Lease, applier: BatchApplier, source_for: Any) -> None:
        assert self.coordinator is not None
        old = self.workers.pop(lease.lease_key, None)
        if old is not None:
            old[0].abort()
        worker = ShardWorker(
            source_for(lease),
            applier,
            self.coordinator,  # type: ignore[arg-type]
            pacer=PollPacer(self.settings.consumer.idle_pause_ms / 1000),
            batch_limit=self._batch_limit,
            metrics=self.metrics,
        )
        task = asyncio.create_task(worker.run(), name=f"shard-{lease.lease_key}")
        task.add_done_callback(lambda _: self._wake.set())
        self.workers[lease.lease_key] = (worker, task)

    def _stop_worker(self, shard: str) -> None:
        entry = self.workers.get(shard)
        if entry is not None:
            entry[0].lease_lost()

    def _reap(self) -> None:
        assert self.coordinator is not None
        for shard, (_worker, task) in list(self.workers.items()):
            if not task.done():
                continue
            del self.workers[shard]
            state = task.result() if not task.cancelled() else ShardState.LEASE_LOST
            if state is not ShardState.SHARD_ENDED:
                self.coordinator.drop(shard)
                if state is ShardState.FAILED:
                    log.error("shard failed; its lease will be taken again", extra={"shard": shard})

    async def _shutdown(self) -> None:
        assert self.coordinator is not None
        timeout = self.settings.consumer.shutdown_timeout_s
        for worker, _ in self.workers.values():
            worker.request_shutdown()
        tasks = [t for _, t in self.workers.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.5, timeout * 0.7))
            for worker, task in self.workers.values():
                if task in pending:
                    worker.abort()
            if pending:
                await asyncio.wait(pending, timeout=max(0.5, timeout * 0.15))
                for t in pending:
                    t.cancel()
        with contextlib.suppress(ClientError, BotoCoreError, OSError):
            await asyncio.wait_for(self.coordinator.release_all(), max(0.5, timeout * 0.1))
        log.info("consumer stopped; leases released", extra={"worker": self.worker_id})


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
