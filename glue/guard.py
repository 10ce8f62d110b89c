"""Never fight the live stream: which drifted keys the reconcile must leave to the consumer.

The job's snapshot ends at its cut-off (the newest change it read). The stream keeps writing
newer changes into Gorse meanwhile, so a key that changed after the cut-off may look drifted
while Gorse is in fact *ahead* of the snapshot. Just before repairing, the job defers:
1. every key touched by a CDC file that appeared after the listing (listed again, read on the
   driver), plus the users whose liked labels such a change can move (the liker of a rating;
   every liker of a changed movie);
2. without --source-check: every (user, item) whose Gorse feedback Timestamp is newer than the
   cut-off, and that feedback's user (its liked labels) -- a heuristic that trusts the rating
   time column to be the change's time.
With --source-check the source database is re-read instead (glue.source_check), which closes
the window between a commit and its CDC file landing in S3.

The first listing is not enough for a long repair: ``DeferralRefresh`` lists the CDC folders
again before each chunk of writes (at most every ``interval_s`` seconds) and adds what the new
files touch, so a change that lands during the repair (a GDPR erasure above all: a D row
defers its user or rating) is left to the stream too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from glue.vocabulary import Kind
from gorse_cdc.errors import PermanentRecordError
from gorse_cdc.mapping import Mapper


@dataclass
class Deferred:
    """Identities to leave alone: user ids, item ids and (user, item) pairs."""

    users: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)
    pairs: set[tuple[str, str]] = field(default_factory=set)

    def covers(self, kind: Kind, key: list[str]) -> bool:
        if kind == Kind.USERS:
            return key[0] in self.users
        if kind == Kind.ITEMS:
            return key[0] in self.items
        return (key[1], key[2]) in self.pairs

    def counts(self) -> dict[str, int]:
        return {"users": len(self.users), "items": len(self.items), "feedback_pairs": len(self.pairs)}


def touched_by(
    mapper: Mapper, table: str, rows: Iterable[tuple[str, dict[str, Any]]], into: Deferred
) -> None:
    """Add what each (op, row) change touches. A row the mapper rejects still defers its raw key."""
    t = mapper.table(table)
    for op, row in rows:
        try:
            ops = mapper.map_change(table, {"L": "load"}.get(op, op), row)
        except PermanentRecordError:
            ops = []
            if t.entity == "feedback" and t.feedback is not None:
                into.pairs.add((str(row.get(t.feedback.user)), str(row.get(t.feedback.item))))
                into.users.add(str(row.get(t.feedback.user)))
            elif t.entity == "user":
                into.users.add(str(row.get(t.key[0])))
            else:
                into.items.add(str(row.get(t.key[0])))
        for o in ops:
            kind, *ident = o.entity_key
            if kind == "user":
                into.users.add(ident[0])
            elif kind == "item":
                into.items.add(ident[0])
            else:
                into.pairs.add((ident[0], ident[1]))
            if o.liked_labels_of is not None:
                into.users.add(o.liked_labels_of)


Poll = Callable[["Deferred"], int]  # adds what CDC files newer than the last listing touch; files read


class DeferralRefresh:
    """Re-list before a chunk of repair writes, at most every ``interval_s`` seconds.

    ``poll`` does the listing and reading (glue.job wires it to the store; tests to fakes)."""

    def __init__(
        self,
        deferred: Deferred,
        poll: Poll,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deferred = deferred
        self.poll = poll
        self.interval_s = interval_s
        self.clock = clock
        self._last: float | None = clock()  # the job listed just before the repair started
        self.listings = 0
        self.files = 0

    def before_chunk(self) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return
        self.files += self.poll(self.deferred)
        self.listings += 1
        self._last = self.clock()
