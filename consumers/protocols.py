"""The four seams of the pipeline. Each is small; the live consumer and the replay tool plug
different implementations into the same decode -> map -> coalesce -> write -> checkpoint path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from consumers.coalesce import WritePlan
from consumers.deadletter import DeadLetter
from consumers.records import RecordBatch


class RecordSource(Protocol):
    """Batches of one shard, in sequence order. Never saves progress itself.

    ``next_batch`` returns the next batch (possibly empty, when caught up); a batch with
    ``shard_ended`` is the last one. Raises RetriableError on transient failures.
    """

    shard_id: str

    async def next_batch(self, max_records: int) -> RecordBatch: ...

    async def close(self) -> None: ...


class CheckpointStore(Protocol):
    """Saves the last safe position of a shard. Guarantees: a checkpoint is written only while
    the caller still owns the shard (else LeaseLostError); idempotent; at-least-once (records
    after the checkpoint are read again after a crash)."""

    async def checkpoint(self, shard_id: str, sequence_number: str) -> None: ...

    async def shard_ended(self, shard_id: str) -> None: ...


class Sink(Protocol):
    """Applies a write plan. Idempotent: applying it twice changes nothing.

    Raises RetriableError when nothing can be said (try the same plan again later) and
    PermanentRecordError when the plan can never apply as it is (the caller bisects).
    """

    async def write(self, plan: WritePlan) -> None: ...


class DeadLetterStore(Protocol):
    """Durably stores records that can never apply. Returns only once they are stored."""

    async def put(self, letters: Sequence[DeadLetter]) -> None: ...
