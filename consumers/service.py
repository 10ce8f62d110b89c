"""The consumer service: leases, shard workers, health, graceful shutdown. It is handed its
parts (ConsumerParts; consumers.wiring.open_consumer builds the real ones) and builds nothing.

Every failover/3 the loop lists the stream's shards, creates missing leases, renews the
held ones (stopping the shards whose lease was lost), takes leases (balancing) and starts a
ShardWorker for each new one. A lease another worker asked for is handed over only after its
worker stopped (its batch flushed and checkpointed, or aborted after the handoff grace); a
lease past its write deadline (not renewed in time) is stopped at once, by a timer task of its
own (``_enforce_deadlines``): the loop may be waiting on DynamoDB (the very fault that keeps the
lease from being renewed), and the write in flight must be cancelled anyway. See
consumers.leases.coordinator for why no two workers ever write one shard's keys at once.
SIGTERM: the workers stop reading, flush and checkpoint their
current batch, the leases are released, and ``run`` returns within shutdown_timeout_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumers.health import HealthServer
from consumers.kinesis.pacing import PollPacer
from consumers.kinesis.shards import ShardInfo
from consumers.leases.coordinator import LeaseCoordinator
from consumers.leases.lease import Lease
from consumers.leases.table import LeaseTable
from consumers.metrics import Metrics
from consumers.protocols import Applier, RecordSource
from consumers.shard_worker import ShardState, ShardWorker
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def _always_ready() -> bool:
    return True


@dataclass
class ConsumerParts:
    """What the consumer runs on. consumers.wiring.open_consumer builds them from the settings
    (aiobotocore clients, the DynamoDB lease table, the Gorse sink); unit tests pass in-memory
    fakes (tests/unit/consumers/fakes.py)."""

    leases: LeaseTable  # or anything with its methods (the fakes' InMemoryLeaseTable)
    list_shards: Callable[[], Awaitable[list[ShardInfo]]]
    source_for: Callable[[Lease], RecordSource]  # a reader from the lease's checkpoint
    applier: Applier
    gorse_ready: Callable[[], Awaitable[bool]] = _always_ready
    on_shards_taken: Callable[[], None] = lambda: None  # forget what other workers may change
    blocked: Callable[[], str | None] = lambda: None  # why writes cannot progress, if they cannot
    last_failure: Callable[[str], str | None] = lambda shard: None  # what a shard's retries hit
    clock: Callable[[], float] = time.monotonic


class Consumer:
    def __init__(self, settings: Settings, parts: ConsumerParts, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.parts = parts
        self.stream = settings.kinesis.stream_name
        self.worker_id = settings.consumer.worker_id or default_worker_id()
        self.metrics = metrics or Metrics()
        self.metrics.info.labels(self.worker_id, self.stream, "native").set(1)
        self.workers: dict[str, tuple[ShardWorker, asyncio.Task[ShardState]]] = {}
        self.coordinator = LeaseCoordinator(
            parts.leases,
            self.worker_id,
            failover_ms=settings.leases.failover_ms,
            max_steal=settings.leases.max_leases_to_steal,
            clock=parts.clock,
        )
        self._wake = asyncio.Event()
        self._stalled: set[str] = set()

    async def run(self, stop: asyncio.Event) -> int:
        """Until ``stop`` is set: follow the shards, hold leases, run a worker per held shard;
        then shut down gracefully (flush, checkpoint, release). Returns the exit code."""
        await self.parts.leases.ensure_table()
        async with contextlib.AsyncExitStack() as stack:
            port = self.settings.consumer.metrics_port
            if port:
                health = HealthServer(
                    self.metrics,
                    self._is_balancing,
                    self.parts.gorse_ready,
                    host=self.settings.consumer.metrics_host,
                    port=port,
                    blocked=self.parts.blocked,
                    stalled=lambda: sorted(self._stalled),
                )
                await health.start()
                stack.push_async_callback(health.stop)
            log.info("consumer started", extra={"worker": self.worker_id, "stream": self.stream})
            deadlines = asyncio.create_task(self._enforce_deadlines(), name="write-deadlines")
            try:
                await self._loop(stop)
                await self._shutdown()
            finally:
                deadlines.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await deadlines
        return 0

    def _is_balancing(self) -> bool:
        c = self.coordinator
        if c.last_balance_at is None:
            return False
        return bool(c.held) or c.clock() - c.last_balance_at < c.failover_s

    def _batch_limit(self) -> int:
        c = self.settings.consumer
        return max(1, min(c.max_records_per_call, c.max_in_flight_records // max(1, len(self.workers))))

    # ---- the loop ---------------------------------------------------------------------------------
    async def _loop(self, stop: asyncio.Event) -> None:
        c = self.coordinator
        # Leases are renewed every failover/6, first in each round: one renewal that fails or
        # times out (a slow DynamoDB) still leaves two more before the write deadline (0.6),
        # and a failed ListShards or Scan never skips one. Shards are synced and balanced on
        # every other round (every failover/3, as before).
        interval = c.failover_s / 6
        rounds = 0
        while not stop.is_set():
            try:
                for shard in await c.renew():
                    self._stop_worker(shard)
            except (ClientError, BotoCoreError, OSError) as e:
                log.warning("lease renewal round failed: %s", e)
            try:
                if rounds % 2 == 0:
                    await c.sync_shards(await self.parts.list_shards())
                self._hand_over()
                taken = await c.balance() if rounds % 2 == 0 else []
                if taken:  # users of newly held shards may have been written elsewhere
                    self.parts.on_shards_taken()
                for lease in taken:
                    self._start_worker(lease)
            except (ClientError, BotoCoreError, OSError) as e:
                log.warning("lease round failed: %s", e)
            rounds += 1
            self._past_deadline()
            self._watch_stalls()
            try:
                await self._reap()
            except (ClientError, BotoCoreError, OSError) as e:
                log.warning("lease handoff failed: %s", e)
            self.metrics.leases_held.set(len(c.held))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop.wait(), self._wake.wait()), interval)

    def _hand_over(self) -> None:
        """Workers of leases asked for: stop reading and flush; past the grace, abort."""
        for shard in list(self.coordinator.handoff_requested):
            entry = self.workers.get(shard)
            if entry is None:
                continue
            if self.coordinator.handoff_overdue(shard):
                entry[0].abort()
            else:
                entry[0].request_shutdown()

    def _watch_stalls(self) -> None:
        """A shard whose batch has been applying for stall_after_s is stalled: a metric,
        readyz, and one error line naming the call that keeps failing (once per stall)."""
        now = asyncio.get_running_loop().time()
        limit = self.settings.consumer.stall_after_s
        stalled = set()
        for shard, (worker, _) in self.workers.items():
            since = worker.applying_since
            if since is not None and now - since > limit:
                stalled.add(shard)
                if shard not in self._stalled:
                    log.error(
                        "shard stalled: its batch has not applied for %.0f s; last failure: %s",
                        now - since,
                        self.parts.last_failure(shard) or "none (a call has not returned)",
                        extra={"shard": shard, "event": "shard_stalled"},
                    )
        for shard in self._stalled - stalled:
            log.info("shard progressing again", extra={"shard": shard, "event": "shard_unstalled"})
        for shard in stalled | self._stalled:
            self.metrics.shard_stalled.labels(shard).set(1 if shard in stalled else 0)
        self._stalled = stalled

    async def _enforce_deadlines(self) -> None:
        """Stop each lease's worker the moment its write deadline passes, whatever the loop is
        waiting on. Wakes at the first deadline, and at least every failover/20."""
        c = self.coordinator
        tick = c.failover_s / 20
        while True:
            self._past_deadline()
            due = c.next_deadline()
            wait = tick if due is None else min(tick, max(0.0, due - c.clock()) + 0.001)
            await asyncio.sleep(wait)

    def _past_deadline(self) -> None:
        """A lease not renewed in time may be someone else's soon: stop writing it now."""
        for shard in list(self.coordinator.held):
            if not self.coordinator.may_write(shard):
                log.error(
                    "lease not renewed before its write deadline: stopping the shard",
                    extra={"shard": shard, "event": "write_deadline"},
                )
                self._stop_worker(shard)
                self.coordinator.drop(shard)

    def _start_worker(self, lease: Lease) -> None:
        old = self.workers.pop(lease.lease_key, None)
        if old is not None:
            old[0].abort()
        worker = ShardWorker(
            self.parts.source_for(lease),
            self.parts.applier,
            self.coordinator,
            pacer=PollPacer(self.settings.consumer.idle_pause_ms / 1000),
            batch_limit=self._batch_limit,
            metrics=self.metrics,
            may_write=functools.partial(self.coordinator.may_write, lease.lease_key),
            read_ahead=self.settings.consumer.read_ahead,
        )
        task = asyncio.create_task(worker.run(), name=f"shard-{lease.lease_key}")
        task.add_done_callback(lambda _: self._wake.set())
        self.workers[lease.lease_key] = (worker, task)

    def _stop_worker(self, shard: str) -> None:
        entry = self.workers.get(shard)
        if entry is not None:
            entry[0].lease_lost()

    async def _reap(self) -> None:
        for shard, (_worker, task) in list(self.workers.items()):
            if not task.done():
                continue
            del self.workers[shard]
            state = task.result() if not task.cancelled() else ShardState.LEASE_LOST
            if shard in self.coordinator.handoff_requested and state is not ShardState.SHARD_ENDED:
                await self.coordinator.hand_off(shard)
            elif state is not ShardState.SHARD_ENDED:
                self.coordinator.drop(shard)
                if state is ShardState.FAILED:
                    log.error("shard failed; its lease will be taken again", extra={"shard": shard})

    async def _shutdown(self) -> None:
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
