"""Pure parts of a replay: where to start and stop, what to keep, in which order shards run,
and the running totals (how fast: gorse_cdc.retry.RateLimiter). No I/O."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from consumers.kinesis.shards import ShardInfo
from consumers.records import ShardRecord
from gorse_cdc.dms.record import DmsDecodeError, decode_record

START_KINDS = ("TRIM_HORIZON", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")


@dataclass(frozen=True)
class StopPoint:
    """Stop at the first record past a timestamp or a sequence number, or (``at_tip``) once a
    shard is caught up with what the stream held when the replay started."""

    timestamp: datetime | None = None
    sequence_number: str | None = None
    at_tip: bool = True

    def passed(self, record: ShardRecord, started_at: datetime) -> bool:
        if self.sequence_number is not None and record.sequence > int(self.sequence_number):
            return True
        arrived = record.arrived_at
        if arrived is None:
            return False
        if self.timestamp is not None and arrived > self.timestamp:
            return True
        return (
            self.at_tip and self.timestamp is None and self.sequence_number is None and arrived > started_at
        )


@dataclass(frozen=True)
class RecordFilter:
    """Keep only these tables / operations (empty: keep all). Control records always pass
    (the applier skips them and counts them)."""

    tables: frozenset[str] = frozenset()
    operations: frozenset[str] = frozenset()

    def keep(self, record: ShardRecord) -> bool:
        if not self.tables and not self.operations:
            return True
        try:
            dms = decode_record(record.data)
        except DmsDecodeError:
            return True  # let the applier dead-letter it with its reason
        if not dms.is_data:
            return True
        if self.tables and dms.table not in self.tables:
            return False
        return not (self.operations and dms.operation not in self.operations)


def shard_waves(shards: Iterable[ShardInfo], chosen: set[str] | None = None) -> list[list[str]]:
    """Shards in waves: every shard runs after all its parents (that are replayed) finished.

    ``chosen`` limits the replay to those shards (their parents outside the set are taken as
    done). Raises ValueError on an unknown shard or a cycle."""
    infos = {s.shard_id: s for s in shards}
    wanted = set(infos) if chosen is None else set(chosen)
    unknown = wanted - set(infos)
    if unknown:
        raise ValueError(f"unknown shard(s): {', '.join(sorted(unknown))}")
    done: set[str] = set()
    waves: list[list[str]] = []
    remaining = set(wanted)
    while remaining:
        ready = sorted(
            s for s in remaining if all(p in done or p not in wanted for p in infos[s].parent_shard_ids)
        )
        if not ready:
            raise ValueError(f"shard lineage has a cycle among {sorted(remaining)}")
        waves.append(ready)
        done.update(ready)
        remaining -= set(ready)
    return waves


def shard_families(shards: Iterable[ShardInfo], chosen: set[str] | None = None) -> list[list[str]]:
    """The chosen shards grouped by lineage (a shard, its parents and its children in one
    family), each family in wave order (parents before children). A key lives on one shard of
    a family at a time and moves to a child at a reshard, so one family's records, coalesced
    in this order, give each of its keys its final state; two families never share a key.

    Raises ValueError when a chosen shard has a child that is not chosen: the child's writers
    own its keys now, and the parent's older states written alone would set them back."""
    infos = {s.shard_id: s for s in shards}
    order = [s for wave in shard_waves(infos.values(), chosen) for s in wave]
    wanted = set(order)
    children: dict[str, set[str]] = {}
    for info in infos.values():
        for p in info.parent_shard_ids:
            children.setdefault(p, set()).add(info.shard_id)
    for shard in sorted(wanted):
        missing = sorted(children.get(shard, set()) - wanted)
        if missing:
            raise ValueError(
                f"shard {shard} was resharded into {', '.join(sorted(children[shard]))}: its keys "
                f"are written on {', '.join(missing)} now, and replaying {shard} without them "
                "would write older states over newer ones. Replay them too (add them to --shards, "
                "or leave --shards out)"
            )
    root: dict[str, str] = {s: s for s in wanted}

    def find(s: str) -> str:
        while root[s] != s:
            root[s] = root[root[s]]
            s = root[s]
        return s

    for shard in wanted:
        for p in infos[shard].parent_shard_ids:
            if p in wanted:
                root[find(shard)] = find(p)
    families: dict[str, list[str]] = {}
    for shard in order:  # wave order kept inside each family
        families.setdefault(find(shard), []).append(shard)
    return sorted(families.values(), key=lambda f: f[0])


class CatchUpEta:
    """ETA of a shard replay from Kinesis's MillisBehindLatest: how fast the lag shrinks per
    wall-clock second (smoothed), and so when it reaches zero."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, smoothing: float = 0.3) -> None:
        self._clock = clock
        self._alpha = smoothing
        self._last: tuple[float, int] | None = None
        self._speed: float | None = None  # lag milliseconds caught up per second

    def update(self, behind_ms: int | None, got_records: bool = False) -> str:
        if behind_ms is None:
            return "behind ?"
        now = self._clock()
        if self._last is not None and now > self._last[0]:
            speed = (self._last[1] - behind_ms) / (now - self._last[0])
            self._speed = (
                speed if self._speed is None else self._alpha * speed + (1 - self._alpha) * self._speed
            )
        self._last = (now, behind_ms)
        if behind_ms <= 0:
            return "at the tip" if got_records else "caught up"
        if not self._speed or self._speed <= 0:
            return f"behind {behind_ms / 1000:.0f} s, ETA ?"
        return f"behind {behind_ms / 1000:.0f} s, ETA {behind_ms / self._speed:.0f} s"


@dataclass
class ReplaySummary:
    read: int = 0
    filtered: int = 0
    applied: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    redriven: int = 0
    # a re-drive's letters removed unapplied (they would set a key back), and those it kept
    superseded_erased: int = 0  # of a user in the erasure log
    superseded_older: int = 0  # a newer letter of the same key was there
    superseded_later: int = 0  # the archive or the stream has a later change of the key
    unplaced: int = 0  # no commit time to order it by: left in the store
    shards: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        parts = [
            f"read {self.read}",
            f"applied {self.applied}",
            f"skipped {self.skipped}",
            f"filtered {self.filtered}",
            f"dead-lettered {self.dead_lettered}",
        ]
        if self.redriven:
            parts.append(f"re-driven {self.redriven}")
        superseded = [
            f"{n} by {what}"
            for n, what in (
                (self.superseded_erased, "an erasure"),
                (self.superseded_older, "a newer letter"),
                (self.superseded_later, "a later change"),
            )
            if n
        ]
        if superseded:
            parts.append("superseded (not applied, removed) " + ", ".join(superseded))
        if self.unplaced:
            parts.append(f"kept unordered (no commit time) {self.unplaced}")
        return ", ".join(parts)
