"""Which leases to take in one balancing round (KCL 2.x style). Pure.

- Only *eligible* leases count: not ended, and every parent shard ended (a child shard is
  processed only after all its parents reached SHARD_END: per-key order across reshards).
  A shard that the stream no longer lists (trimmed after retention, e.g. a parent across an
  outage longer than retention) counts as ended: nothing can be read from it any more, and
  its children must not wait for it forever.
- Target per worker = ceil(eligible leases / live workers); live workers are the owners of
  unexpired leases, plus this one.
- Take unowned and expired leases first; when there are none and this worker is below target,
  steal from the most loaded worker (if it is above target), at most ``max_steal`` per round.
  A steal is a *request* (Lease.handoff_to): the owner flushes, checkpoints and hands the lease
  over (consumers.leases.coordinator). A lease with a move pending counts for its requester and
  is never a victim again.
- A lease pinned by a replay is nobody's to take or steal until it expires (the replay died).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from consumers.leases.lease import Lease


def eligible(leases: Iterable[Lease], gone: Collection[str] = frozenset()) -> list[Lease]:
    """Leases that may be processed now. ``gone``: shards the stream no longer has."""
    by_key = {lease.lease_key: lease for lease in leases}

    def done(key: str) -> bool:
        p = by_key.get(key)
        return p is None or p.ended or key in gone  # an absent parent was trimmed

    return [
        lease
        for lease in by_key.values()
        if not done(lease.lease_key) and all(done(p) for p in lease.parent_shard_ids)
    ]


@dataclass
class Choice:
    take: list[Lease] = field(default_factory=list)  # free or expired: take now
    request: list[Lease] = field(default_factory=list)  # owned by a live worker: ask for a handoff


def choose_leases(
    leases: Iterable[Lease],
    me: str,
    expired: set[str],
    max_steal: int,
    rng: random.Random | None = None,
    gone: Collection[str] = frozenset(),
) -> Choice:
    """Leases this worker should take or ask for now (conditional writes decide the races)."""
    rng = rng or random.Random()
    active = [le for le in eligible(leases, gone) if not le.pinned or le.lease_key in expired]
    live_owned = [le for le in active if le.lease_owner and le.lease_key not in expired]

    def holder(le: Lease) -> str | None:
        return le.handoff_to or le.lease_owner

    load = Counter(holder(le) for le in live_owned)
    workers = set(load) | {me}
    target = math.ceil(len(active) / len(workers)) if active else 0
    need = target - load.get(me, 0)
    if need <= 0:
        return Choice()
    free = [le for le in active if le.lease_owner != me and (not le.lease_owner or le.lease_key in expired)]
    if free:
        rng.shuffle(free)  # spread workers starting together over different leases
        return Choice(take=free[:need])
    others = [(n, w) for w, n in load.items() if w != me and w is not None]
    if not others or max_steal <= 0:
        return Choice()
    most, victim = max(others)
    if most <= target:
        return Choice()
    victims = [le for le in live_owned if le.lease_owner == victim and le.handoff_to is None]
    rng.shuffle(victims)
    return Choice(request=victims[: min(need, max_steal, most - target)])
