"""The repair: drifted keys -> Gorse writes, phase by phase, in chunks, rate limited, with a
progress bar. Keys the guard defers are left to the stream and reported; --dry-run counts
what it would write and writes nothing.

Phase order keeps Gorse consistent while it runs: items and users first (feedback for them
can then land), feedback puts, then deletes (feedback, users, items). A (user, item) holding
both like and unlike shows up as one extra typed row: only the wrong type is deleted.
Before each chunk the ``refresh`` hook (glue.guard.DeferralRefresh) may grow the deferred
keys with changes that landed during the repair. glue.safety decides, before any chunk,
whether the repair runs at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from tqdm import tqdm

from glue.diff import decode_key
from glue.guard import Deferred
from glue.vocabulary import DriftClass, Key, Kind
from glue.writes import GorseWriter
from gorse_cdc.errors import GorsePermanentError, InvalidEntityError
from gorse_cdc.retry import RateLimiter

log = logging.getLogger(__name__)


class RepairAction(StrEnum):
    UPSERT = "upsert"  # upsert users/items, put feedback (the expected entity)
    DELETE = "delete"  # delete the key


class DeferReason(StrEnum):
    """Why a drifted key is left to the stream (the report's sample_deferred reason)."""

    AFTER_CUTOFF = "changed after the cut-off"
    SOURCE_MOVED = "source differs from the snapshot"


@dataclass(frozen=True)
class Phase:
    kind: Kind
    classes: tuple[DriftClass, ...]
    action: RepairAction


_PUT = (DriftClass.MISSING, DriftClass.CHANGED)
PHASES: tuple[Phase, ...] = (
    Phase(Kind.ITEMS, _PUT, RepairAction.UPSERT),
    Phase(Kind.USERS, _PUT, RepairAction.UPSERT),
    Phase(Kind.FEEDBACK, _PUT, RepairAction.UPSERT),
    Phase(Kind.FEEDBACK, (DriftClass.EXTRA,), RepairAction.DELETE),
    Phase(Kind.USERS, (DriftClass.EXTRA,), RepairAction.DELETE),
    Phase(Kind.ITEMS, (DriftClass.EXTRA,), RepairAction.DELETE),
)
SAMPLE = 10


@dataclass(frozen=True)
class DriftRow:
    kind: Kind
    cls: DriftClass
    key: list[str]
    entity: str | None  # expected Gorse JSON (None for extra)


class SourceCheck(Protocol):
    """Re-reads the source database for a chunk of drifted keys (glue.source_check)."""

    def split(self, rows: Sequence[DriftRow]) -> tuple[list[DriftRow], list[DriftRow]]: ...
    async def settle(self, rows: Sequence[DriftRow], writer: GorseWriter) -> int: ...


@dataclass(frozen=True)
class DeferredKey:
    kind: Kind
    key: Key
    reason: DeferReason

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "key": list(self.key), "reason": self.reason.value}


@dataclass(frozen=True)
class RepairFailure:
    """A chunk Gorse refused (first SAMPLE keys)."""

    kind: Kind
    keys: tuple[Key, ...]
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "keys": [list(k) for k in self.keys], "error": self.error}


Counts = Mapping[tuple[Kind, DriftClass], int]


def _by_kind_class(counts: Counts) -> dict[str, int]:
    return {f"{kind.value}.{cls.value}": n for (kind, cls), n in counts.items()}


@dataclass(frozen=True)
class RepairReport:
    applied: Counts  # rows written (or, with --dry-run, that would be)
    deferred_to_stream: Counts
    rewritten_after_source_moved: int
    sample_deferred: tuple[DeferredKey, ...]
    failures: tuple[RepairFailure, ...]
    deferred_keys: Mapping[str, int]  # Deferred.counts()

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": _by_kind_class(self.applied),
            "deferred_to_stream": _by_kind_class(self.deferred_to_stream),
            "rewritten_after_source_moved": self.rewritten_after_source_moved,
            "sample_deferred": [d.to_json() for d in self.sample_deferred],
            "failures": [f.to_json() for f in self.failures],
            "deferred_keys": dict(self.deferred_keys),
        }


@dataclass
class RepairResult:
    """The repair's running tally; ``report`` freezes it."""

    applied: Counter[tuple[Kind, DriftClass]] = field(default_factory=Counter)
    deferred: Counter[tuple[Kind, DriftClass]] = field(default_factory=Counter)
    rewritten: int = 0  # keys the source check wrote again because the source moved meanwhile
    deferred_sample: list[DeferredKey] = field(default_factory=list)
    failures: list[RepairFailure] = field(default_factory=list)

    def report(self, deferred_keys: Mapping[str, int]) -> RepairReport:
        return RepairReport(
            applied=dict(self.applied),
            deferred_to_stream=dict(self.deferred),
            rewritten_after_source_moved=self.rewritten,
            sample_deferred=tuple(self.deferred_sample),
            failures=tuple(self.failures),
            deferred_keys=dict(deferred_keys),
        )


def _chunks(rows: Iterable[DriftRow], size: int) -> Iterator[list[DriftRow]]:
    chunk: list[DriftRow] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Repairer:
    def __init__(
        self,
        writer: GorseWriter | None,
        limiter: RateLimiter,
        deferred: Deferred,
        *,
        check: SourceCheck | None = None,
        chunk_size: int = 500,
        progress: bool = True,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self.writer = writer  # None: dry run
        self.limiter = limiter
        self.deferred = deferred
        self.check = check
        self.chunk_size = chunk_size
        self.progress = progress
        self.refresh = refresh  # before each chunk: add keys changed meanwhile to ``deferred``
        self.result = RepairResult()

    def _defer(self, rows: Iterable[DriftRow], reason: DeferReason) -> None:
        for r in rows:
            self.result.deferred[(r.kind, r.cls)] += 1
            if len(self.result.deferred_sample) < SAMPLE:
                self.result.deferred_sample.append(DeferredKey(r.kind, tuple(r.key), reason))

    async def _write(self, action: RepairAction, kind: Kind, rows: Sequence[DriftRow]) -> None:
        assert self.writer is not None
        await self.limiter.acquire(len(rows))
        try:
            if action == RepairAction.UPSERT:
                await self.writer.upsert(kind, [r.entity for r in rows if r.entity is not None])
            else:
                await self.writer.delete(kind, [r.key for r in rows])
        except (GorsePermanentError, InvalidEntityError) as e:
            log.error("repair of %d %s failed: %s", len(rows), kind, e)
            self.result.failures.append(
                RepairFailure(kind, tuple(tuple(r.key) for r in rows[:SAMPLE]), str(e))
            )
            return
        for r in rows:
            self.result.applied[(r.kind, r.cls)] += 1

    async def run_phase(self, phase: Phase, rows: Iterable[Any], total: int) -> None:
        """``rows``: the phase's drift rows (Spark Rows of glue.diff.DRIFT_COLUMNS)."""
        kind, action = phase.kind, phase.action
        desc = f"repair {kind.value} ({action.value})"
        bar = tqdm(total=total, desc=desc, unit="row", disable=not self.progress)
        try:
            drift = (DriftRow(Kind(r.kind), DriftClass(r.cls), decode_key(r.key), r.entity) for r in rows)
            for chunk in _chunks(drift, self.chunk_size):
                if self.refresh is not None:
                    self.refresh()
                keep = [r for r in chunk if not self.deferred.covers(r.kind, r.key)]
                self._defer(
                    [r for r in chunk if self.deferred.covers(r.kind, r.key)], DeferReason.AFTER_CUTOFF
                )
                if self.check is not None and keep:
                    keep, moved = self.check.split(keep)
                    self._defer(moved, DeferReason.SOURCE_MOVED)
                if keep and self.writer is None:
                    for r in keep:
                        self.result.applied[(r.kind, r.cls)] += 1
                elif keep:
                    await self._write(action, kind, keep)
                    if self.check is not None:
                        self.result.rewritten += await self.check.settle(keep, self.writer)  # type: ignore[arg-type]
                bar.update(len(chunk))
        finally:
            bar.close()
