"""What a user's row shows: Gorse's cached recommendations reshaped by the user's latest
actions. Pure: no I/O.

- Items the user has acted on (any feedback: rated, played, completed, disliked) leave the
  row at once, whatever Gorse's cache still says.
- Recommendations computed on request from the latest likes (Gorse's session recommendation)
  are interleaved with the cached ones, first place to the fresh ones: the latest likes shape
  the top of the row within a second, while the cached list catches up at Gorse's pace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from gorse_cdc.gorse.models import Feedback


def interleave(first: Sequence[str], second: Sequence[str], exclude: Iterable[str] = ()) -> list[str]:
    """Alternate the two lists (``first`` leads), dropping duplicates and excluded items."""
    seen = set(exclude)
    out: list[str] = []
    for i in range(max(len(first), len(second))):
        for source in (first, second):
            if i < len(source) and source[i] not in seen:
                seen.add(source[i])
                out.append(source[i])
    return out


def latest_positive(feedback: Iterable[Feedback], positive: frozenset[str], limit: int) -> list[Feedback]:
    """The user's latest positive actions, newest first (what the session recommendation uses)."""
    floor = datetime.min
    chosen = [f for f in feedback if f.feedback_type in positive]
    chosen.sort(key=lambda f: f.timestamp.replace(tzinfo=None) if f.timestamp else floor, reverse=True)
    return chosen[:limit]


def page(items: Sequence[str], offset: int, n: int) -> list[str]:
    return list(items[offset : offset + n])


def merge_neighbors(
    neighbor_lists: Iterable[Sequence[tuple[str, float]]], exclude: Iterable[str] = (), decay: float = 0.7
) -> list[str]:
    """Items similar to the user's latest likes (``neighbor_lists``: newest like first), scores
    summed over the likes as Gorse's session recommendation does, each like weighted ``decay``
    times the next newer one so that the latest action leads; best first. ``exclude``: the
    items already acted on."""
    skip = set(exclude)
    scores: dict[str, float] = {}
    for rank, neighbors in enumerate(neighbor_lists):
        weight = decay**rank
        for item, score in neighbors:
            if item not in skip:
                scores[item] = scores.get(item, 0.0) + weight * score
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]
