"""What flows through the pipeline: raw shard records and their per-record outcomes. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One Kinesis record as read (or as read back from an archive)."""

    shard_id: str
    sequence_number: str
    data: bytes
    partition_key: str = ""
    arrived_at: datetime | None = None  # ApproximateArrivalTimestamp

    @property
    def sequence(self) -> int:
        """Kinesis sequence numbers are decimal strings up to 128 bits: compare as ints."""
        return int(self.sequence_number)


@dataclass(slots=True)
class RecordBatch:
    """What one read returns. ``shard_ended``: the shard is closed and fully read.
    ``stop_point``: a bounded reader (a replay) reached its stop point; this is its last batch."""

    shard_id: str
    records: list[ShardRecord] = field(default_factory=list)
    millis_behind_latest: int | None = None
    shard_ended: bool = False
    child_shard_ids: tuple[str, ...] = ()
    stop_point: bool = False

    @property
    def last_sequence_number(self) -> str | None:
        return self.records[-1].sequence_number if self.records else None


def sequence_key(sequence_number: str) -> int:
    return int(sequence_number)
