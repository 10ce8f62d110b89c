"""What the gateway's workers share: token buckets (``SharedBuckets``, held to the same contract
as the one-process ``Buckets``, and one limit across forked processes) and the items users just
acted on (``SharedActions``: a ring read from a cursor, shared across forked processes; two
``Reads`` on one ring leave out what either accepted)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from gateway.ratelimit import Buckets, BucketTable
from gateway.reads import ReadConfig, Reads
from gateway.sharedacts import SharedActions
from gateway.sharedbuckets import SharedBuckets
from tests.unit.gateway.test_reads import MemoryGorse

TABLES: list[Callable[[], BucketTable]] = [Buckets, lambda: SharedBuckets(capacity=1 << 10)]


@pytest.mark.parametrize("make", TABLES, ids=["Buckets", "SharedBuckets"])
def test_bucket_tables_keep_one_bucket_per_key(make: Callable[[], BucketTable]) -> None:
    t = make()
    assert t.take("a", 1, 2, 0.0) == 0.0
    assert t.take("a", 1, 2, 0.0) == 0.0
    assert t.take("a", 1, 2, 0.0) == pytest.approx(1.0)  # empty: a token back in 1 s
    assert t.wait("a", 1, 2, 0.5) == pytest.approx(0.5)  # peeks, takes nothing
    assert t.take("b", 1, 2, 0.0) == 0.0  # another key has its own bucket
    assert t.take("a", 1, 2, 1.0) == 0.0  # refilled
    assert t.take("a", 5, 2, 1.0) == 0.0  # a new rate: a new, full bucket
    assert t.wait("unknown", 1, 1, 0.0) == 0.0


def test_a_full_shared_window_drops_its_stalest_bucket() -> None:
    t = SharedBuckets(capacity=1)  # one window of 8 slots for every key
    for i in range(8):
        t.take(f"k{i}", 1, 1, float(i))
    assert len(t) == 8
    t.take("k8", 1, 1, 100.0)  # drops k0 (untouched since 0.0: full again anyway)
    assert len(t) == 8
    assert t.take("k0", 1, 1, 100.0) == 0.0  # back with a full bucket
    assert t.take("k8", 1, 1, 100.0) > 0  # k8 kept its (empty) bucket


def test_one_limit_across_forked_processes() -> None:
    """4 processes take from one key at the same instant: burst tokens in all, not 4 x burst."""
    t = SharedBuckets(capacity=1 << 10)
    r, w = os.pipe()
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover (child)
            got = sum(1 for _ in range(50) if t.take("key", 1.0, 30, 1000.0) == 0.0)
            os.write(w, got.to_bytes(1, "little"))
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(w)
    taken = sum(os.read(r, 4))
    assert taken == 30


def test_actions_ring_reads_from_a_cursor_and_skips_what_it_overwrote() -> None:
    ring = SharedActions(capacity=4)
    cursor, got = ring.since(0)
    assert (cursor, got) == (0, [])
    ring.append("u1", ["a", "b"], 1.0)
    cursor, got = ring.since(cursor)
    assert cursor == 2 and got == [("u1", "a", 1.0), ("u1", "b", 1.0)]
    ring.append("u2", ["c", "d", "e", "f", "g"], 2.0)  # 5 more in a ring of 4
    cursor, got = ring.since(cursor)
    assert cursor == 7 and [i for _, i, _ in got] == ["d", "e", "f", "g"]
    ring.append("u3", ["x" * 129, "ok"], 3.0)  # too long for the ring: left to the worker
    assert ring.since(cursor)[1] == [("u3", "ok", 3.0)]


def test_actions_appended_in_a_forked_process_are_read_in_another() -> None:
    ring = SharedActions(capacity=64)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        ring.append("u", ["i1", "i2"], 5.0)
        os._exit(0)
    os.waitpid(pid, 0)
    assert ring.since(0) == (2, [("u", "i1", 5.0), ("u", "i2", 5.0)])


async def test_a_play_on_one_worker_leaves_the_row_on_another() -> None:
    """Was: each worker knew only the events it accepted itself."""
    g = MemoryGorse()
    ring = SharedActions(capacity=64)
    one = Reads(g, ReadConfig(), shared=ring)  # type: ignore[arg-type]
    other = Reads(g, ReadConfig(), shared=ring)  # type: ignore[arg-type]
    first = (await other.recommend("u", 3, 0, None))["items"][0]["id"]
    one.acted("u", [first])
    assert first not in [i["id"] for i in (await other.recommend("u", 3, 0, None))["items"]]
