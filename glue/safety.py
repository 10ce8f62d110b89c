"""The repair's refusals, as pure decisions: a partial expected state (LOAD files missing) and
mass deletes (more than a share of Gorse's rows of a kind). Either one refuses the whole repair
before a single write: the run ends with exit code FAILURE and the reason in the report
("refused") and the log. ``force_deletes`` (or a share of 1.0 for the cap) overrides knowingly.

Why refuse rather than repair what looks safe: an expected state built from a partial archive
(a LOAD folder being rewritten by a new full load, a lifecycle rule that expired LOAD files)
is missing rows, and "missing from the expected state" means "delete from Gorse".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from glue.vocabulary import DriftClass, Kind


@dataclass(frozen=True)
class LoadFolder:
    """One table's LOAD files as listed: their counters, and the count recorded at full load
    (``_dms_state``; None when nothing was recorded, as with AWS DMS itself)."""

    table: str
    folder: str  # where they were listed (for the message)
    counters: tuple[int, ...]
    recorded: int | None = None
    has_cdc: bool = False


def partial_load(folder: LoadFolder) -> str | None:
    """Why ``folder``'s full load looks partial (None: it looks whole).

    DMS numbers LOAD files 1, 2, 3 ... (hex, LOAD00000001.csv) per table and full load, so a
    gap or a missing first file means files were removed or are still being written; fewer
    files than the recorded count means the last ones are gone; CDC files with no LOAD file
    at all, when a count was recorded, means the LOAD files expired."""
    got = sorted(set(folder.counters))
    where = f"table {folder.table}: LOAD files in {folder.folder}"
    if folder.recorded is not None and len(got) < folder.recorded:
        return f"{where}: {len(got)} present, {folder.recorded} recorded at the full load"
    if not got:
        return None
    missing = sorted(set(range(1, got[-1] + 1)) - set(got))
    if missing:
        shown = ", ".join(f"LOAD{n:08X}" for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        return f"{where}: {len(missing)} missing ({shown})"
    return None


def partial_loads(folders: Iterable[LoadFolder]) -> list[str]:
    return [why for f in folders if (why := partial_load(f)) is not None]


def delete_cap(
    counts: Mapping[tuple[Kind, DriftClass], int],
    actual_rows: Mapping[Kind, int],
    max_share: float,
    min_rows: int = 0,
) -> str | None:
    """Why the planned deletes are too many (None: within the cap).

    Planned deletes of a kind are its extra keys; the cap is ``max_share`` of Gorse's current
    rows of that kind, but never below ``min_rows`` (a small Gorse). A share of 1.0 never
    refuses."""
    if not 0 < max_share <= 1:
        raise ValueError(f"max delete share must be in (0, 1], got {max_share}")
    if max_share >= 1:
        return None
    over = []
    for kind in Kind:
        deletes = counts.get((kind, DriftClass.EXTRA), 0)
        rows = actual_rows.get(kind, 0)
        if deletes > max(min_rows, max_share * rows):
            share = deletes / rows if rows else 1.0
            over.append(f"{kind.value} {deletes} of {rows} ({share:.1%})")
    if not over:
        return None
    return (
        f"repair refused: planned deletes exceed {max_share:.1%} of Gorse's rows: "
        + ", ".join(over)
        + " (is the expected state partial? --force-deletes or --max-delete-share 1 to override)"
    )
