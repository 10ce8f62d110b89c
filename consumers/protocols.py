"""The seams of the pipeline. Each is small and states what every implementation guarantees;
the live consumer, the replay tool and the unit tests' in-memory fakes plug different
implementations into the same read -> apply -> checkpoint path (ShardWorker).

    RecordSource     a shard's records in order         ShardReader, FanOutReader, BoundedSource
    Applier          decode -> map -> coalesce -> write  BatchApplier, the replay's FilteredApplier
    Sink             idempotent Gorse writes            GorseSink, DryRunSink
    DeadLetterStore  records that can never apply       S3DeadLetterStore, SqsDeadLetterStore,
                                                        CollectingStore
    CheckpointStore  a shard's last safe position       LeaseCoordinator (live), ReplayShards
                                                        (replay job), NoCheckpoints (dry runs)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from consumers.coalesce import WritePlan
from consumers.deadletter import DeadLetter
from consumers.records import RecordBatch, ShardRecord

if TYPE_CHECKING:
    from consumers.pipeline import BatchOutcome


class RecordSource(Protocol):
    """Batches of one shard, in sequence order. Never saves progress itself.

    ``next_batch`` returns the next batch (possibly empty, when caught up); a batch with
    ``shard_ended`` is the last one. Transient read failures (throttling, a dropped
    connection, an expired iterator) are retried inside with the shared retry policy, resuming
    after the last record returned: a record is never skipped nor returned twice by one source.
    What cannot be retried (the stream is gone, access denied) raises.
    """

    shard_id: str

    async def next_batch(self, max_records: int) -> RecordBatch: ...

    async def close(self) -> None: ...


class Applier(Protocol):
    """Applies a batch of one shard's records, in order. On return every record is applied,
    skipped (older than what Gorse holds) or durably dead-lettered: only then may the caller
    checkpoint past it. Raises Stopped when ``should_stop`` turned true before that (no
    checkpoint); transient failures are retried inside, never dead-lettered."""

    async def apply(
        self, records: Sequence[ShardRecord], should_stop: Callable[[], bool]
    ) -> BatchOutcome: ...


class Sink(Protocol):
    """Applies a write plan. Idempotent: applying it twice changes nothing.

    Raises RetriableError when nothing can be said (try the same plan again later) and
    PermanentRecordError when the plan can never apply as it is (the caller bisects).
    """

    async def write(self, plan: WritePlan) -> None: ...


class DeadLetterStore(Protocol):
    """Durably stores records that can never apply. Returns only once they are stored."""

    async def put(self, letters: Sequence[DeadLetter]) -> None: ...


class EndReason(enum.Enum):
    """Why a shard's reading ended for good."""

    CLOSED = "closed"  # Kinesis closed the shard (reshard) and it was read to its end
    STOP_POINT = "stop_point"  # a replay reached its stop point (or caught up)


class CheckpointStore(Protocol):
    """Where a shard's progress is saved. Every implementation guarantees:

    - ``checkpoint(shard, seq)`` is called only once every record up to ``seq`` is durably
      applied or dead-lettered (the caller's duty), and is durable when it returns;
    - it is conditional on the caller still owning the shard: if another owner took it,
      LeaseLostError is raised and nothing is written (a lost owner never moves a position);
    - idempotent: the same call twice leaves the same state;
    - at-least-once: after a crash, reading resumes after the last checkpoint, so records
      after it are read (and applied, idempotently) again;
    - ``shard_ended`` records that the shard is done (``CLOSED``: its children may start;
      ``STOP_POINT``: a replay will not read it again) and gives the shard up.
    """

    async def checkpoint(self, shard_id: str, sequence_number: str) -> None: ...

    async def shard_ended(
        self, shard_id: str, children: tuple[str, ...] = (), reason: EndReason = EndReason.CLOSED
    ) -> None: ...
