"""`gorse-cdc data activity`: change the source database like an OTT platform, at a rate.

Library API (what tests call)::

    from producers.activity import run_activity
    summary = run_activity(settings, changes=50_000, rate=0, seed=7, record=True)
    summary.events, summary.rows, summary.by_kind, summary.journal  # journal only with record

``changes`` counts events (one user action: a new rating, a re-rating across the like
threshold, a deleted rating, a new user or movie, an edited title or genres, a GDPR erasure
that deletes a user and, through the FK cascade, all their ratings); ``rows`` counts the rows
they changed. Each event is its own transaction (``per_transaction`` > 1 groups events).
The session uses synchronous_commit = off: the generator's own durability does not matter,
and it writes several times faster. With ``record=True`` the journal lists every row change
in commit order, cascades included: the oracle for end-to-end tests.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from gorse_cdc.settings import Settings
from producers.activity_events import EVENTS, Change, World
from producers.db import connect, is_mysql

log = logging.getLogger(__name__)

__all__ = ["EVENTS", "ActivitySummary", "Change", "run_activity"]


@dataclass
class ActivitySummary:
    events: int = 0
    rows: int = 0
    seconds: float = 0.0
    by_kind: Counter[str] = field(default_factory=Counter)
    journal: list[Change] | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / max(self.seconds, 1e-9)

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.by_kind.items()))
        return (
            f"activity: {self.events} changes ({self.rows} rows) in {self.seconds:.1f} s "
            f"({self.events_per_s:,.0f}/s): {kinds}"
        )


def run_activity(
    settings: Settings,
    *,
    changes: int | None = None,
    duration_s: float | None = None,
    rate: float = 0.0,
    seed: int | None = None,
    weights: dict[str, float] | None = None,
    per_transaction: int = 1,
    record: bool = False,
    stop: threading.Event | None = None,
    progress_s: float | None = None,
) -> ActivitySummary:
    """Run events until ``changes`` events, ``duration_s`` seconds or ``stop``; ``rate`` events
    per second (0: as fast as possible). Returns the summary (with the journal if ``record``)."""
    if changes is None and duration_s is None and stop is None:
        raise ValueError("give changes, duration_s or stop: activity would never end")
    table = {k: (fn, (weights or {}).get(k, w)) for k, (fn, w) in EVENTS.items()}
    unknown = set(weights or {}) - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown event kinds {sorted(unknown)}; known: {sorted(EVENTS)}")
    kinds = [k for k, (_, w) in table.items() if w > 0]
    cum = [table[k][1] for k in kinds]
    rng = random.Random(seed)
    summary = ActivitySummary(journal=[] if record else None)
    started = last_log = time.monotonic()
    with connect(settings) as conn:
        if not is_mysql(conn):
            conn.execute("SET synchronous_commit = off")
        world = World.read(conn)
        conn.commit()
        in_txn = 0
        while True:
            now = time.monotonic()
            if (changes is not None and summary.events >= changes) or (stop and stop.is_set()):
                break
            if duration_s is not None and now - started >= duration_s:
                break
            if rate > 0 and (ahead := started + summary.events / rate - now) > 0:
                time.sleep(min(ahead, 0.5))
                continue
            kind = rng.choices(kinds, weights=cum)[0]
            rows = table[kind][0](conn, world, rng)
            in_txn += 1
            if in_txn >= per_transaction:
                conn.commit()
                in_txn = 0
            summary.events += 1
            summary.rows += len(rows)
            summary.by_kind[kind] += 1
            if summary.journal is not None:
                summary.journal.extend(rows)
            if progress_s and now - last_log >= progress_s:
                last_log = now
                rate_now = summary.events / max(now - started, 1e-9)
                log.info("activity: %d changes (%d rows), %.0f/s", summary.events, summary.rows, rate_now)
        conn.commit()
    summary.seconds = time.monotonic() - started
    return summary
