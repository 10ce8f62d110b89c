"""In-memory fakes of the consumer's seams, for unit tests of its logic in milliseconds (as
async-kinesis' testing.py): a Kinesis stream with shards and resharding, a lease table with the
same conditional writes as the DynamoDB one, and an applier that records what it applied.

Fakes are for logic only: the integration tests run the same code on the real emulators."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consumers.deadletter import DeadLetter
from consumers.kinesis.shards import ShardInfo
from consumers.leases.lease import SHARD_END, TRIM_HORIZON, Lease, LeaseLostError
from consumers.pipeline import BatchOutcome, Stopped
from consumers.protocols import EndReason
from consumers.records import RecordBatch, ShardRecord


# ---- Kinesis ----------------------------------------------------------------------------------
@dataclass
class FakeShard:
    shard_id: str
    parents: tuple[str, ...] = ()
    records: list[ShardRecord] = field(default_factory=list)
    closed: bool = False


class InMemoryStream:
    """Shards, records (sequence numbers increase across the stream), split/close."""

    def __init__(self, shard_count: int = 1) -> None:
        self.shards: dict[str, FakeShard] = {}
        self._seq = 1000
        for i in range(shard_count):
            self.add_shard(f"shard-{i:04d}")
        self.reads = 0

    def add_shard(self, shard_id: str, parents: tuple[str, ...] = ()) -> None:
        self.shards[shard_id] = FakeShard(shard_id, parents)

    def put(self, shard_id: str, *payloads: bytes) -> list[str]:
        shard = self.shards[shard_id]
        if shard.closed:
            raise ValueError(f"{shard_id} is closed")
        out = []
        for p in payloads:
            self._seq += 1
            shard.records.append(ShardRecord(shard_id, str(self._seq), p, "k"))
            out.append(str(self._seq))
        return out

    def split(self, shard_id: str) -> tuple[str, str]:
        """Close ``shard_id``; two children take over."""
        self.shards[shard_id].closed = True
        a, b = f"{shard_id}-a", f"{shard_id}-b"
        self.add_shard(a, (shard_id,))
        self.add_shard(b, (shard_id,))
        return a, b

    async def list_shards(self) -> list[ShardInfo]:
        return [ShardInfo(s.shard_id, s.parents, closed=s.closed) for s in self.shards.values()]

    def source(self, shard_id: str, checkpoint: str | None = None) -> InMemorySource:
        return InMemorySource(self, shard_id, checkpoint)

    def source_for(self, lease: Lease) -> InMemorySource:
        return self.source(lease.lease_key, lease.checkpoint)

    def children(self, shard_id: str) -> tuple[str, ...]:
        return tuple(sorted(s.shard_id for s in self.shards.values() if shard_id in s.parents))


class InMemorySource:
    """A RecordSource over one fake shard, from a checkpoint (exclusive)."""

    def __init__(self, stream: InMemoryStream, shard_id: str, checkpoint: str | None) -> None:
        self.stream = stream
        self.shard_id = shard_id
        records = stream.shards[shard_id].records
        self._pos = 0
        if checkpoint not in (None, "", TRIM_HORIZON):
            assert checkpoint is not None
            self._pos = next((i + 1 for i, r in enumerate(records) if r.sequence_number == checkpoint), 0)
        self.closed = False

    async def next_batch(self, max_records: int) -> RecordBatch:
        await asyncio.sleep(0)
        self.stream.reads += 1
        shard = self.stream.shards[self.shard_id]
        batch = shard.records[self._pos : self._pos + max_records]
        self._pos += len(batch)
        at_end = self._pos >= len(shard.records)
        ended = shard.closed and at_end
        return RecordBatch(
            self.shard_id,
            list(batch),
            0 if at_end else 1000,
            shard_ended=ended,
            child_shard_ids=self.stream.children(self.shard_id) if ended else (),
        )

    async def close(self) -> None:
        self.closed = True


# ---- lease table ------------------------------------------------------------------------------
class InMemoryLeaseTable:
    """The DynamoDB LeaseTable's contract, conditions included (consumers.leases.table)."""

    def __init__(self) -> None:
        self.rows: dict[str, Lease] = {}
        self.checkpoints: list[tuple[str, str, str]] = []  # (shard, owner, position) in order
        self.handoffs: list[tuple[str, str, str]] = []  # (shard, from, to) in order

    async def ensure_table(self) -> None:
        return None

    async def list_leases(self) -> list[Lease]:
        return list(self.rows.values())

    async def get(self, lease_key: str) -> Lease | None:
        return self.rows.get(lease_key)

    async def create_if_absent(self, lease: Lease) -> bool:
        if lease.lease_key in self.rows:
            return False
        self.rows[lease.lease_key] = lease
        return True

    async def renew(self, lease: Lease) -> Lease:
        row = self.rows[lease.lease_key]
        if row.lease_counter != lease.lease_counter or row.lease_owner != lease.lease_owner:
            raise LeaseLostError(lease.lease_key)
        self.rows[lease.lease_key] = new = row.with_(lease_counter=row.lease_counter + 1)
        return new

    async def take(self, lease: Lease, owner: str, *, pinned: bool = False) -> Lease | None:
        row = self.rows[lease.lease_key]
        if row.lease_counter != lease.lease_counter:
            return None
        switches = row.owner_switches_since_checkpoint + (0 if row.lease_owner == owner else 1)
        new = row.with_(
            lease_owner=owner,
            lease_counter=row.lease_counter + 1,
            owner_switches_since_checkpoint=switches,
            handoff_to=None,
            pinned=pinned,
        )
        self.rows[lease.lease_key] = new
        return new

    async def request_handoff(self, lease: Lease, requester: str) -> bool:
        row = self.rows[lease.lease_key]
        if row.lease_owner != lease.lease_owner or row.handoff_to is not None:
            return False
        self.rows[lease.lease_key] = row.with_(handoff_to=requester)
        return True

    async def hand_off(self, shard_id: str, owner: str, to: str) -> bool:
        row = self.rows[shard_id]
        if row.lease_owner != owner or row.handoff_to != to:
            return False
        self.rows[shard_id] = row.with_(
            lease_owner=to,
            lease_counter=row.lease_counter + 1,
            handoff_to=None,
            owner_switches_since_checkpoint=row.owner_switches_since_checkpoint + 1,
        )
        self.handoffs.append((shard_id, owner, to))
        return True

    async def checkpoint(self, shard_id: str, owner: str, position: str) -> None:
        row = self.rows[shard_id]
        if row.lease_owner != owner:
            raise LeaseLostError(shard_id)
        self.rows[shard_id] = row.with_(checkpoint=position, owner_switches_since_checkpoint=0)
        self.checkpoints.append((shard_id, owner, position))

    async def mark_ended(self, shard_id: str, owner: str, children: list[str]) -> None:
        await self.checkpoint(shard_id, owner, SHARD_END)
        row = self.rows[shard_id]
        self.rows[shard_id] = row.with_(child_shard_ids=row.child_shard_ids | frozenset(children))

    async def release(self, shard_id: str, owner: str) -> bool:
        row = self.rows[shard_id]
        if row.lease_owner != owner:
            return False
        self.rows[shard_id] = row.with_(lease_owner=None, lease_counter=row.lease_counter + 1, pinned=False)
        return True

    def force_owner(self, shard_id: str, owner: str) -> None:
        """Another worker took the lease behind our back (a steal, an expiry elsewhere)."""
        row = self.rows[shard_id]
        self.rows[shard_id] = row.with_(lease_owner=owner, lease_counter=row.lease_counter + 1)


# ---- applier and checkpoints --------------------------------------------------------------------
class RecordingApplier:
    """An Applier that records what it applied, per shard, in order. ``fail_with`` raises on
    the next call; ``gate`` (an Event) holds every apply until set."""

    def __init__(self) -> None:
        self.applied: list[ShardRecord] = []
        self.fail_with: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def apply(self, records: Sequence[ShardRecord], should_stop: Callable[[], bool]) -> BatchOutcome:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            err, self.fail_with = self.fail_with, None
            raise err
        if should_stop():
            raise Stopped()
        self.applied.extend(records)
        return BatchOutcome(applied=len(records), dead_letters=list[DeadLetter]())

    def sequences(self, shard_id: str) -> list[str]:
        return [r.sequence_number for r in self.applied if r.shard_id == shard_id]


class RecordingCheckpoints:
    """A CheckpointStore that records every call; ``lose_after`` calls raise LeaseLostError."""

    def __init__(self, lose_after: int | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.lose_after = lose_after

    def _maybe_lose(self, shard_id: str) -> None:
        if self.lose_after is not None and len(self.calls) >= self.lose_after:
            raise LeaseLostError(shard_id)

    async def checkpoint(self, shard_id: str, sequence_number: str) -> None:
        self._maybe_lose(shard_id)
        self.calls.append(("checkpoint", shard_id, sequence_number))

    async def shard_ended(
        self, shard_id: str, children: tuple[str, ...] = (), reason: EndReason = EndReason.CLOSED
    ) -> None:
        self._maybe_lose(shard_id)
        self.calls.append(("ended", shard_id, reason.value, *children))


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
