"""The amazon-kclpy (v3 interface) record processor: one per shard lease, in its own process.

    initialize        build the shard's apply path (ShardRuntime)
    process_records   decode -> map -> coalesce -> Gorse (dead letters, bisection), retried
                      until every record is applied, skipped or dead-lettered; only THEN
                      checkpoint the batch's last sequence number: a checkpoint never passes an
                      unapplied record (invariant 2)
    lease_lost        stop; nothing more is written or checkpointed
    shard_ended       the shard is read to its end: checkpoint SHARD_END (children may start)
    shutdown_requested  every delivered batch is already applied: checkpoint it

amazon-kclpy swallows a processor's exceptions and asks for the next batch, whose checkpoint
would pass the failed one: an unexpected failure therefore ends this process (SystemExit),
and the daemon gives the shard up without a checkpoint past it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

from consumers.kcl.runtime import ShardRuntime
from consumers.pipeline import Stopped
from consumers.records import ShardRecord

log = logging.getLogger(__name__)
CHECKPOINT_RETRIES = 10
CHECKPOINT_BACKOFF_S = 0.5
LOST = frozenset({"ShutdownException"})  # KCL: this worker does not hold the lease any more
RETRIABLE = frozenset({"ThrottlingException", "KinesisClientLibDependencyException"})


def shard_record(shard_id: str, rec: Any) -> ShardRecord:
    arrived = rec.approximate_arrival_timestamp
    return ShardRecord(
        shard_id,
        rec.sequence_number,
        rec.binary_data,
        rec.partition_key,
        arrived.astimezone(UTC) if arrived is not None else None,
    )


class GorseRecordProcessor(processor.RecordProcessorBase):  # type: ignore[misc]
    def __init__(self, runtime_factory: Callable[[], ShardRuntime]) -> None:
        self.runtime_factory = runtime_factory
        self.runtime: ShardRuntime | None = None
        self.shard_id = ""
        self.last_applied: str | None = None
        self.lost = False

    def _fail(self, what: str) -> None:
        log.exception(
            "KCL processor: %s failed; exiting without a checkpoint past it",
            what,
            extra={"shard": self.shard_id},
        )
        raise SystemExit(1)

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        log.info(
            "KCL lease taken", extra={"shard": self.shard_id, "checkpoint": initialize_input.sequence_number}
        )
        try:
            self.runtime = self.runtime_factory()
            self.runtime.open()
        except Exception:
            self._fail("initialize")

    def process_records(self, process_records_input: Any) -> None:
        if self.lost or self.runtime is None:
            return
        records = [shard_record(self.shard_id, r) for r in process_records_input.records]
        if not records:
            return
        if self.last_applied is None:  # where this lease's reading began (interop checks it)
            log.info(
                "KCL first batch",
                extra={"shard": self.shard_id, "first_sequence": records[0].sequence_number},
            )
        try:
            self.runtime.apply(records)
        except Stopped:
            log.warning(
                "KCL processor stopped before its batch applied (daemon gone?): exiting",
                extra={"shard": self.shard_id},
            )
            raise SystemExit(1) from None
        except Exception:
            self._fail("applying a batch")
        self.last_applied = records[-1].sequence_number
        self._checkpoint(process_records_input.checkpointer, self.last_applied)

    def _checkpoint(self, checkpointer: Any, sequence: str | None) -> None:
        for attempt in range(CHECKPOINT_RETRIES):
            try:
                checkpointer.checkpoint(sequence)
                if self.runtime is not None:
                    self.runtime.checkpointed(self.shard_id)
                return
            except kcl.CheckpointError as e:
                if e.value in LOST:
                    log.info("KCL lease lost at checkpoint", extra={"shard": self.shard_id})
                    self.lost = True
                    return
                if e.value not in RETRIABLE or attempt == CHECKPOINT_RETRIES - 1:
                    log.error("KCL checkpoint failed: %s", e.value, extra={"shard": self.shard_id})
                    raise SystemExit(1) from e
                time.sleep(CHECKPOINT_BACKOFF_S * (attempt + 1))

    def lease_lost(self, lease_lost_input: Any) -> None:
        log.info("KCL lease lost", extra={"shard": self.shard_id})
        self.lost = True
        self._close()

    def shard_ended(self, shard_ended_input: Any) -> None:
        log.info("KCL shard ended: checkpointing SHARD_END", extra={"shard": self.shard_id})
        self._checkpoint(shard_ended_input.checkpointer, None)
        self._close()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        if not self.lost and self.last_applied is not None:
            self._checkpoint(shutdown_requested_input.checkpointer, self.last_applied)
        self._close()

    def _close(self) -> None:
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None
