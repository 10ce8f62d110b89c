from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.kinesis.shards import ShardInfo
from consumers.records import ShardRecord
from consumers.replay.archive import format_position, parse_position
from consumers.replay.plan import CatchUpEta, RecordFilter, StopPoint, shard_families, shard_waves
from gorse_cdc.dms.record import DmsRecord, encode_record
from gorse_cdc.retry import RateLimiter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(seq: int, at: datetime | None = T0, table: str = "ratings", op: str = "insert") -> ShardRecord:
    data = encode_record(DmsRecord("data", op, "public", table, {"user_id": 1}))
    return ShardRecord("s", str(seq), data, "1", at)


def test_waves_parents_before_children() -> None:
    shards = [
        ShardInfo("a"),
        ShardInfo("b"),
        ShardInfo("c", ("a",)),  # split of a
        ShardInfo("d", ("a",)),
        ShardInfo("e", ("c", "b")),  # merge of c and b
    ]
    assert shard_waves(shards) == [["a", "b"], ["c", "d"], ["e"]]
    # a chosen subset: parents outside it count as done
    assert shard_waves(shards, {"e", "c"}) == [["c"], ["e"]]
    with pytest.raises(ValueError, match="unknown"):
        shard_waves(shards, {"zzz"})


def test_stop_points() -> None:
    started = T0 + timedelta(minutes=1)
    assert not StopPoint().passed(rec(1), started)
    assert StopPoint().passed(rec(1, T0 + timedelta(minutes=2)), started)  # after the tip at start
    assert StopPoint(sequence_number="5").passed(rec(6), started)
    assert not StopPoint(sequence_number="5").passed(rec(5), started)
    assert StopPoint(timestamp=T0 - timedelta(seconds=1)).passed(rec(1), started)
    # an explicit stop point replaces the tip-at-start rule
    assert not StopPoint(sequence_number="9").passed(rec(1, T0 + timedelta(hours=1)), started)


def test_record_filter() -> None:
    f = RecordFilter(frozenset({"ratings"}), frozenset({"delete"}))
    assert f.keep(rec(1, op="delete"))
    assert not f.keep(rec(1, op="insert"))
    assert not f.keep(rec(1, table="users", op="delete"))
    assert RecordFilter().keep(rec(1, table="anything"))
    bad = ShardRecord("s", "1", b"not json")
    assert f.keep(bad)  # undecodable: the applier dead-letters it with its reason


def test_rate_limiter() -> None:
    now = [0.0]
    lim = RateLimiter(100, burst_s=1.0, clock=lambda: now[0])  # as the replay runner builds it
    assert lim.delay(100) == 0.0  # one second's burst
    assert lim.delay(50) == pytest.approx(0.5)
    now[0] += 1.0
    assert lim.delay(40) == 0.0
    assert RateLimiter(0).delay(10**9) == 0.0


def test_archive_positions_round_trip() -> None:
    pos = {
        "ratings": ("dms/public/ratings/20260101-000000000.csv", 12),
        "users": ("dms/public/users/LOAD00000001.csv", 0),
    }
    text = format_position(pos)
    assert parse_position(text) == pos
    assert parse_position(None) == {}
    assert parse_position("SHARD_END") == {}


def test_catch_up_eta() -> None:
    now = [0.0]
    eta = CatchUpEta(clock=lambda: now[0], smoothing=1.0)
    assert eta.update(None) == "behind ?"
    assert eta.update(60_000) == "behind 60 s, ETA ?"
    now[0] = 1.0
    assert eta.update(50_000) == "behind 50 s, ETA 5 s"  # 10 s of lag caught up per second
    now[0] = 2.0
    assert eta.update(0) == "caught up"


def test_families_group_a_lineage_and_keep_parents_first() -> None:
    shards = [
        ShardInfo("a"),
        ShardInfo("b"),
        ShardInfo("c", ("a",)),  # split of a
        ShardInfo("d", ("a",)),
        ShardInfo("e", ("c", "b")),  # merge of c and b: a, b, c, d, e are one lineage
        ShardInfo("f"),
    ]
    assert shard_families(shards) == [["a", "b", "c", "d", "e"], ["f"]]
    assert shard_families(shards, {"d", "f"}) == [["d"], ["f"]]  # children alone are exact
    assert shard_families(shards, {"c", "d", "e"}) == [["c", "e"], ["d"]]


def test_a_closed_shard_without_its_children_is_refused() -> None:
    """Its children's writers own its keys now: its older states written alone set them back."""
    shards = [ShardInfo("a"), ShardInfo("c", ("a",)), ShardInfo("d", ("a",))]
    with pytest.raises(ValueError, match=r"shard a was resharded into c, d: its keys are written on d"):
        shard_families(shards, {"a", "c"})
    with pytest.raises(ValueError, match="Replay them too"):
        shard_families(shards, {"a"})
