"""ShardWorker: processes one leased shard; an explicit state machine.

    INITIALIZING -> PROCESSING -> SHARD_ENDED      (closed shard read to its end; SHARD_END saved)
                             \\-> LEASE_LOST        (stop at once, no checkpoint)
                             \\-> SHUT_DOWN         (graceful: current batch flushed, checkpointed)
                             \\-> FAILED            (an unexpected error; the lease is dropped)

One batch at a time: read -> apply (decode, map, coalesce, write, dead-letter) -> checkpoint
its last sequence number -> pause (PollPacer). A checkpoint therefore never passes a record
that is not applied or dead-lettered. While a shard is behind (a full batch, or the stream says
so), the next batch is read during the apply (``read_ahead``): reading and parsing then overlap
Gorse's answers; a read holds nothing, so one cut short by a stop is simply dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from typing import Any

from consumers.kinesis.pacing import PollPacer
from consumers.leases.lease import LeaseLostError
from consumers.metrics import Metrics
from consumers.pipeline import Stopped
from consumers.protocols import Applier, CheckpointStore, EndReason, RecordSource
from consumers.records import RecordBatch
from gorse_cdc.errors import FatalError

log = logging.getLogger(__name__)


class ShardState(enum.Enum):
    INITIALIZING = "initializing"
    PROCESSING = "processing"
    SHARD_ENDED = "shard_ended"
    LEASE_LOST = "lease_lost"
    SHUT_DOWN = "shut_down"
    FAILED = "failed"


class IllegalTransitionError(FatalError):
    """A ShardWorker was asked to move between states that do not follow each other (a bug)."""


class ShardWorker:
    def __init__(
        self,
        source: RecordSource,
        applier: Applier,
        checkpoints: CheckpointStore,
        *,
        pacer: PollPacer,
        batch_limit: Callable[[], int],
        metrics: Metrics | None = None,
        may_write: Callable[[], bool] = lambda: True,
        read_ahead: bool = True,
    ) -> None:
        self.read_ahead = read_ahead
        self.read_ahead_batches = 0
        self.shard_id = source.shard_id
        self.may_write = may_write  # the lease's write deadline (consumers.leases.coordinator)
        self.source = source
        self.applier = applier
        self.checkpoints = checkpoints
        self.pacer = pacer
        self.batch_limit = batch_limit
        self.metrics = metrics or Metrics()
        self.state = ShardState.INITIALIZING
        self.last_checkpoint: str | None = None
        self.error: BaseException | None = None  # what made it FAILED
        self._shutdown = asyncio.Event()  # stop reading; flush the current batch
        self._abort = False  # lease lost / deadline passed: stop at once, no checkpoint
        self._lost = False
        self._applying: asyncio.Future[Any] | None = None
        self.applying_since: float | None = None  # monotonic time the batch in flight began

    # ---- transitions ---------------------------------------------------------------------------
    def _to(self, new: ShardState, *expected: ShardState) -> None:
        if self.state not in expected:
            raise IllegalTransitionError(f"shard {self.shard_id}: {self.state.value} -> {new.value}")
        log.info("shard %s -> %s", self.state.value, new.value, extra={"shard": self.shard_id})
        self.state = new

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def lease_lost(self) -> None:
        self._lost = True
        self.abort()

    def abort(self) -> None:
        """Stop at once (lease lost, write deadline or shutdown deadline passed): the write in
        flight is cancelled, no further call starts, nothing more is checkpointed."""
        self._abort = True
        self._shutdown.set()
        if self._applying is not None:
            self._applying.cancel()

    def _should_stop(self) -> bool:
        if not self._abort and not self.may_write():
            self._lost = True
            self._abort = True
        return self._abort

    # ---- the loop ------------------------------------------------------------------------------
    async def _read(self, limit: int, ahead: asyncio.Future[RecordBatch] | None) -> RecordBatch | None:
        """The next batch (``ahead``: already being read), or None when a shutdown came first
        (a read holds nothing)."""
        read = ahead if ahead is not None else asyncio.ensure_future(self.source.next_batch(limit))
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._shutdown.wait())
        waiting: set[asyncio.Future[Any]] = {read, stop}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if read in done:
            stop.cancel()
            return read.result()
        read.cancel()
        return None

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shutdown.wait(), seconds)

    async def run(self) -> ShardState:
        self._to(ShardState.PROCESSING, ShardState.INITIALIZING)
        try:
            await self._loop()
        except LeaseLostError:
            self._lost = True
        except Stopped:
            pass
        except asyncio.CancelledError:
            self._abort = True
            raise
        except Exception as e:
            log.exception("shard worker failed", extra={"shard": self.shard_id})
            self.error = e
            self._to(ShardState.FAILED, ShardState.PROCESSING)
        finally:
            await self.source.close()
        if self.state is ShardState.PROCESSING:
            self._to(ShardState.LEASE_LOST if self._lost else ShardState.SHUT_DOWN, ShardState.PROCESSING)
        return self.state

    def _behind(self, batch: RecordBatch, limit: int) -> bool:
        ended = batch.shard_ended or batch.stop_point
        return not ended and (len(batch.records) >= limit or (batch.millis_behind_latest or 0) > 0)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        ahead: asyncio.Future[RecordBatch] | None = None
        try:
            while not self._shutdown.is_set():
                started = loop.time()
                limit = self.batch_limit()
                batch, ahead = await self._read(limit, ahead), None
                if batch is None:
                    return
                if batch.records:
                    if self._should_stop():
                        return
                    if self.read_ahead and self._behind(batch, limit):
                        ahead = asyncio.ensure_future(self.source.next_batch(limit))
                        self.read_ahead_batches += 1
                    applying = asyncio.ensure_future(self.applier.apply(batch.records, self._should_stop))
                    self._applying, self.applying_since = applying, loop.time()
                    try:
                        await applying
                    except asyncio.CancelledError:
                        if not self._abort:
                            raise  # the worker itself is cancelled
                        return
                    finally:
                        self._applying = self.applying_since = None
                    if self._abort:
                        return
                    last = batch.records[-1].sequence_number
                    await self.checkpoints.checkpoint(self.shard_id, last)
                    self.metrics.checkpoints.labels(self.shard_id).inc()
                    self.last_checkpoint = last
                if batch.shard_ended or batch.stop_point:
                    reason = EndReason.STOP_POINT if batch.stop_point else EndReason.CLOSED
                    await self.checkpoints.shard_ended(self.shard_id, batch.child_shard_ids, reason)
                    self._to(ShardState.SHARD_ENDED, ShardState.PROCESSING)
                    return
                if ahead is None:
                    pause = self.pacer.next_pause(len(batch.records), limit, batch.millis_behind_latest)
                    await self._pause(pause - (loop.time() - started))
        finally:
            if ahead is not None:  # a read cut short by a stop holds nothing: drop it
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
