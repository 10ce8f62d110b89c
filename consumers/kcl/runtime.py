"""The apply path of one shard in a KCL processor process: the native engine's own parts
(clients, GorseSink with its item cache and refresh records, BatchApplier with dead letters
and bisection, Metrics and the /metrics, /healthz, /readyz endpoint), wired by
consumers.wiring and run on an asyncio loop in a background thread, because amazon-kclpy
calls the processor synchronously from its stdin loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from consumers.health import HealthServer
from consumers.metrics import Metrics
from consumers.pipeline import BatchApplier, BatchOutcome
from consumers.records import ShardRecord
from consumers.sink.gorse_sink import GorseSink
from consumers.wiring import build_applier, build_mapper, gorse_sink, open_clients
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class ShardRuntime:
    """Built once per processor (per shard lease); ``apply`` returns once every record is
    applied, skipped or dead-lettered (retrying transient failures without limit)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="kcl-apply", daemon=True)
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        self.applier: BatchApplier | None = None
        self.sink: GorseSink | None = None
        self.stopping = False
        self.daemon_pid = os.getppid()  # the MultiLangDaemon that started this processor

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def open(self) -> None:
        self._run(self._open())

    async def _open(self) -> None:
        s, stack = self.settings, self._stack
        clients = await open_clients(stack, s, self.metrics)
        sink = gorse_sink(s, clients, build_mapper(s), metrics=self.metrics)
        self.sink, self.applier = (
            sink,
            build_applier(s, clients, self.metrics, source_name=s.kinesis.stream_name, sink=sink),
        )
        sink.shards_taken()  # this shard's users may have been written by another worker
        retells = asyncio.create_task(sink.run_retells(), name="retell-likers")
        stack.callback(retells.cancel)
        if s.consumer.metrics_port:
            applier = self.applier

            async def gorse_ready() -> bool:
                try:
                    await asyncio.wait_for(clients.gorse.health(), 2.0)
                    return True
                except Exception:  # any failure means "not ready"
                    return False

            health = HealthServer(
                self.metrics,
                lambda: not self.stopping,
                gorse_ready,
                host=s.consumer.metrics_host,
                port=s.consumer.metrics_port,
                blocked=lambda: applier.blocked,
            )
            try:
                await health.start()
                stack.push_async_callback(health.stop)
            except FatalError as e:  # one process per shard: more shards than free ports
                log.warning("no metrics endpoint for this shard's processor: %s", e)

    def apply(self, records: Sequence[ShardRecord]) -> BatchOutcome:
        if self.applier is None:
            raise FatalError("the KCL processor applied a batch before initialize")
        applier = self.applier
        for r in records[:1]:
            self.metrics.records_read.labels(r.shard_id).inc(len(records))
        return self._run(applier.apply(records, self.should_stop))

    def should_stop(self) -> bool:
        """Stop writing when closing, or when the daemon died (kill -9 of the JVM): its
        leases will go to another worker, so this orphan must not write on (Stopped: no
        checkpoint; the process then exits)."""
        if os.getppid() != self.daemon_pid:
            self.stopping = True
        return self.stopping

    def checkpointed(self, shard_id: str) -> None:
        self.metrics.checkpoints.labels(shard_id).inc()

    def close(self) -> None:
        self.stopping = True
        with contextlib.suppress(Exception):
            self._run(self._stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
