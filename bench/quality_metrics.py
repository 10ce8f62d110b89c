"""Pure pieces of the recommendation-quality bench (bench_quality.py): the per-user time split
and the top-k metrics. No I/O, no servers; unit-tested in tests/unit/bench/.

Definitions (the usual ones, as in Gorse's and cornac's evaluators):
- precision@k = hits in the first k / k (a list shorter than k is not rewarded for it);
- recall@k    = hits in the first k / number of relevant items;
- NDCG@k      = DCG@k / ideal DCG@k, binary gains, log2(rank + 1) discount, the ideal list
                holding min(k, relevant) hits;
- each is averaged over the users that have at least one relevant held-out item.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import pairwise

LIKE = 4  # a rating >= 4 is a like (the mapping's threshold): the relevant held-out items


@dataclass(frozen=True)
class Rating:
    user: int
    movie: int
    rating: int
    at: float  # seconds since the epoch (any monotonic scale works)


@dataclass(frozen=True)
class Split:
    train: list[Rating]
    test: list[Rating]  # each user's latest ratings, in time order per user

    def relevant(self, threshold: int = LIKE) -> dict[int, set[int]]:
        """user -> held-out movies rated >= threshold (users without one are left out)."""
        out: dict[int, set[int]] = defaultdict(set)
        for r in self.test:
            if r.rating >= threshold:
                out[r.user].add(r.movie)
        return dict(out)

    def seen(self) -> dict[int, set[int]]:
        """user -> movies rated in the training part (what a list must not show again)."""
        out: dict[int, set[int]] = defaultdict(set)
        for r in self.train:
            out[r.user].add(r.movie)
        return dict(out)


def held_out_count(n: int, fraction: float) -> int:
    """How many of a user's ``n`` ratings are held out: round(n * fraction), at least one when
    the user has two or more (a user's only rating stays in training), never all of them."""
    if n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def time_split(ratings: Iterable[Rating], fraction: float = 0.1) -> Split:
    """Hold out each user's last ``fraction`` of ratings by time (ties broken by movie id, so
    the split is deterministic)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    by_user: dict[int, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_user[r.user].append(r)
    train: list[Rating] = []
    test: list[Rating] = []
    for user in sorted(by_user):
        rows = sorted(by_user[user], key=lambda r: (r.at, r.movie))
        k = held_out_count(len(rows), fraction)
        train.extend(rows[: len(rows) - k])
        test.extend(rows[len(rows) - k :])
    return Split(train, test)


def precision_at_k(ranked: Sequence[Hashable], relevant: AbstractSet[Hashable], k: int = 10) -> float:
    if k <= 0:
        raise ValueError("k must be >= 1")
    return sum(1 for i in ranked[:k] if i in relevant) / k


def recall_at_k(ranked: Sequence[Hashable], relevant: AbstractSet[Hashable], k: int = 10) -> float:
    if not relevant:
        return 0.0
    return sum(1 for i in ranked[:k] if i in relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[Hashable], relevant: AbstractSet[Hashable], k: int = 10) -> float:
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    ndcg: float
    users: int  # users evaluated (with at least one relevant held-out item)
    empty: int  # of those, users for whom the list was empty

    def row(self) -> tuple[float, float, float]:
        return self.precision, self.recall, self.ndcg


def evaluate(lists: Mapping[int, Sequence[int]], relevant: Mapping[int, set[int]], k: int = 10) -> Scores:
    """Mean precision/recall/NDCG@k over every user in ``relevant``; a user missing from
    ``lists`` counts as an empty list (zero), never as skipped."""
    users = [u for u in relevant if relevant[u]]
    if not users:
        return Scores(0.0, 0.0, 0.0, 0, 0)
    p = r = n = 0.0
    empty = 0
    for u in users:
        ranked = list(lists.get(u, ()))
        rel: set[int] = relevant[u]
        empty += not ranked
        p += precision_at_k(ranked, rel, k)
        r += recall_at_k(ranked, rel, k)
        n += ndcg_at_k(ranked, rel, k)
    m = len(users)
    return Scores(p / m, r / m, n / m, m, empty)


def top_unseen(ranked: Iterable[int], seen: set[int], k: int = 10) -> list[int]:
    """The first k items of a shared list (Popular, Latest) that the user has not rated: what an
    app shows a user who already watched the head of the list."""
    out: list[int] = []
    for i in ranked:
        if i not in seen and i not in out:
            out.append(i)
            if len(out) == k:
                break
    return out


@dataclass(frozen=True)
class Probe:
    """One streamed like and the user's next held-out like: was the next one in the row of 10
    before the like was applied, and after?"""

    user: int
    liked: int
    next_like: int


def next_like_probes(test: Sequence[Rating], threshold: int = LIKE) -> dict[int, list[Probe]]:
    """user -> their held-out likes in time order, each paired with the like that follows it
    (the last like of a user has no probe: nothing follows it)."""
    likes: dict[int, list[Rating]] = defaultdict(list)
    for r in test:
        if r.rating >= threshold:
            likes[r.user].append(r)
    out: dict[int, list[Probe]] = {}
    for user, rows in likes.items():
        rows.sort(key=lambda r: (r.at, r.movie))
        if len(rows) >= 2:
            out[user] = [Probe(user, a.movie, b.movie) for a, b in pairwise(rows)]
    return out


def rolling_rate(events: Sequence[tuple[float, bool]], window: float) -> list[tuple[float, float]]:
    """(time, hit) events -> (window end, share of hits) per consecutive window of ``window``
    seconds; windows without events are left out."""
    if window <= 0:
        raise ValueError("window must be > 0")
    buckets: dict[int, list[bool]] = defaultdict(list)
    for t, hit in events:
        buckets[int(t // window)].append(hit)
    return [((b + 1) * window, sum(v) / len(v)) for b, v in sorted(buckets.items())]
