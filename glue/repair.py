"""The repair: drifted keys -> Gorse writes, phase by phase, in chunks, rate limited, with a
progress bar. Keys the guard defers are left to the stream and reported; --dry-run counts
what it would write and writes nothing.

Phase order keeps Gorse consistent while it runs: items and users first (feedback for them
can then land), feedback puts, then deletes (feedback, users, items). A (user, item) holding
both like and unlike shows up as one extra typed row: only the wrong type is deleted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm import tqdm

from glue.diff import decode_key
from glue.guard import Deferred
from glue.writes import GorseWriter
from gorse_cdc.errors import GorsePermanentError, InvalidEntityError
from gorse_cdc.retry import RateLimiter

log = logging.getLogger(__name__)
Phase = tuple[str, tuple[str, ...], str]  # kind, drift classes, action
PHASES: list[Phase] = [
    ("items", ("missing", "changed"), "upsert"),
    ("users", ("missing", "changed"), "upsert"),
    ("feedback", ("missing", "changed"), "upsert"),
    ("feedback", ("extra",), "delete"),
    ("users", ("extra",), "delete"),
    ("items", ("extra",), "delete"),
]
SAMPLE = 10


@dataclass
class DriftRow:
    kind: str
    cls: str
    key: list[str]
    entity: str | None  # expected Gorse JSON (None for extra)


class SourceCheck(Protocol):
    """Re-reads the source database for a chunk of drifted keys (glue.source_check)."""

    def split(self, rows: Sequence[DriftRow]) -> tuple[list[DriftRow], list[DriftRow]]: ...
    async def settle(self, rows: Sequence[DriftRow], writer: GorseWriter) -> int: ...


@dataclass
class RepairResult:
    applied: Counter[str] = field(default_factory=Counter)  # "kind.cls" -> rows written
    deferred: Counter[str] = field(default_factory=Counter)
    rewritten: int = 0  # keys the source check wrote again because the source moved meanwhile
    deferred_sample: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "applied": dict(self.applied),
            "deferred_to_stream": dict(self.deferred),
            "rewritten_after_source_moved": self.rewritten,
            "sample_deferred": self.deferred_sample,
            "failures": self.failures,
        }


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
    ) -> None:
        self.writer = writer  # None: dry run
        self.limiter = limiter
        self.deferred = deferred
        self.check = check
        self.chunk_size = chunk_size
        self.progress = progress
        self.result = RepairResult()

    def _defer(self, rows: Iterable[DriftRow], reason: str) -> None:
        for r in rows:
            self.result.deferred[f"{r.kind}.{r.cls}"] += 1
            if len(self.result.deferred_sample) < SAMPLE:
                self.result.deferred_sample.append({"kind": r.kind, "key": r.key, "reason": reason})

    async def _write(self, action: str, kind: str, rows: Sequence[DriftRow]) -> None:
        assert self.writer is not None
        await self.limiter.acquire(len(rows))
        try:
            if action == "upsert":
                await self.writer.upsert(kind, [r.entity for r in rows if r.entity is not None])
            else:
                await self.writer.delete(kind, [r.key for r in rows])
        except (GorsePermanentError, InvalidEntityError) as e:
            log.error("repair of %d %s failed: %s", len(rows), kind, e)
            self.result.failures.append(
                {"kind": kind, "keys": [r.key for r in rows[:SAMPLE]], "error": str(e)}
            )
            return
        for r in rows:
            self.result.applied[f"{r.kind}.{r.cls}"] += 1

    async def run_phase(self, phase: Phase, rows: Iterable[Any], total: int) -> None:
        kind, _, action = phase
        bar = tqdm(total=total, desc=f"repair {kind} ({action})", unit="row", disable=not self.progress)
        try:
            for chunk in _chunks(
                (DriftRow(r.kind, r.cls, decode_key(r.key), r.entity) for r in rows), self.chunk_size
            ):
                keep = [r for r in chunk if not self.deferred.covers(r.kind, r.key)]
                self._defer(
                    [r for r in chunk if self.deferred.covers(r.kind, r.key)], "changed after the cut-off"
                )
                if self.check is not None and keep:
                    keep, moved = self.check.split(keep)
                    self._defer(moved, "source differs from the snapshot")
                if keep and self.writer is None:
                    for r in keep:
                        self.result.applied[f"{r.kind}.{r.cls}"] += 1
                elif keep:
                    await self._write(action, kind, keep)
                    if self.check is not None:
                        self.result.rewritten += await self.check.settle(keep, self.writer)  # type: ignore[arg-type]
                bar.update(len(chunk))
        finally:
            bar.close()
