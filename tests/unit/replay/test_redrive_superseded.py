"""Which dead letters a re-drive applies (consumers.replay.superseded): never one that sets a
key back, never one of an erased user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumers.deadletter import DeadLetter
from consumers.replay.archive import ArchiveSource
from consumers.replay.plan import ReplaySummary
from consumers.replay.redrive import StoredLetter, sort_out
from consumers.replay.superseded import LetterFacts, _time, later_changes, letter_facts, plan_redrive
from gorse_cdc.dms.record import DmsRecord, encode_record
from gorse_cdc.dms.s3files import encode_csv, table_definition_key
from gorse_cdc.errors import FatalError
from gorse_cdc.mapping import Mapper
from gorse_cdc.settings import Settings
from tests.unit.replay.test_archive_order import DEFS, MemoryS3

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MAPPER = Mapper()


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def movie(seq: int, s: float, title: str = "x") -> LetterFacts:
    return LetterFacts(("movies", "7"), None, at(s), True, "shard-0", seq)


def rating(seq: int, user: str, s: float | None) -> LetterFacts:
    return LetterFacts(("ratings", user, "7"), user, None if s is None else at(s), True, "shard-1", seq)


def test_only_the_newest_letter_of_a_key_is_applied() -> None:
    letters = [movie(1, 1), movie(3, 3), movie(2, 2)]
    plan = plan_redrive(letters, set(), {})
    assert plan.apply == [1] and plan.older == [0, 2]


def test_a_letter_older_than_a_change_in_the_archive_is_superseded() -> None:
    letters = [movie(1, 1), movie(2, 2)]
    plan = plan_redrive(letters, set(), {("movies", "7"): at(5)})
    assert plan.apply == [] and plan.older == [0] and plan.later == [1]


def test_a_change_at_the_letters_own_commit_time_is_the_letter_itself() -> None:
    plan = plan_redrive([movie(1, 2)], set(), {("movies", "7"): at(2)})
    assert plan.apply == [0] and not plan.later


def test_changes_of_other_keys_do_not_matter() -> None:
    plan = plan_redrive([movie(1, 1)], set(), {("movies", "8"): at(5), ("ratings", "1", "7"): at(5)})
    assert plan.apply == [0]


def test_letters_of_erased_users_are_never_applied() -> None:
    letters = [rating(1, "u1", 1), rating(2, "u2", 1), movie(3, 1)]
    plan = plan_redrive(letters, {"u1"}, {})
    assert plan.erased == [0] and plan.apply == [1, 2]
    # an erased user's letter does not hide an older letter of the same key either: both go
    plan = plan_redrive([rating(1, "u1", 1), rating(2, "u1", 2)], {"u1"}, {})
    assert plan.erased == [0, 1] and not plan.apply


def test_letters_without_a_time_stay_unless_unordered() -> None:
    letters = [rating(1, "u1", None), movie(2, 1)]
    plan = plan_redrive(letters, set(), {})
    assert plan.unplaced == [0] and plan.apply == [1]
    unordered = plan_redrive(letters, set(), None)
    assert unordered.apply == [0, 1] and not unordered.unplaced


def test_unordered_skips_the_later_change_check_but_not_the_rest() -> None:
    letters = [movie(1, 1), movie(2, 2), rating(3, "u1", 1)]
    plan = plan_redrive(letters, {"u1"}, None)
    assert plan.apply == [1] and plan.older == [0] and plan.erased == [2]


def test_letters_without_a_key_go_through_the_applier() -> None:
    plan = plan_redrive([LetterFacts(), LetterFacts(), movie(1, 1)], set(), {("movies", "7"): at(9)})
    assert plan.apply == [0, 1] and plan.later == [2]


def test_every_letter_lands_in_exactly_one_list() -> None:
    letters = [movie(i, i % 4) for i in range(8)] + [rating(i, f"u{i % 3}", i) for i in range(9)]
    letters += [rating(20, "u1", None), LetterFacts()]
    plan = plan_redrive(letters, {"u0"}, {("ratings", "u2", "7"): at(100)})
    parts = [plan.apply, plan.erased, plan.older, plan.later, plan.unplaced]
    assert sorted(i for p in parts for i in p) == list(range(len(letters)))


def letter(record: bytes, seq: str = "5") -> DeadLetter:
    return DeadLetter(record, "bad", "X", "shardId-1", seq, "ratings", "update", "s")


def test_facts_of_a_dms_letter() -> None:
    raw = encode_record(
        DmsRecord(
            "data",
            "update",
            "public",
            "ratings",
            {"user_id": 12.0, "movie_id": "1.2e+1", "rating": 5},
            timestamp="2026-12-01T00:00:02.000000Z",
            commit_timestamp="2026-12-01T00:00:01.500000Z",
        )
    )
    f = letter_facts(letter(raw), MAPPER)
    assert f.key == ("ratings", "12", "12") and f.user == "12" and f.archived
    assert f.at == datetime(2026, 12, 1, 0, 0, 1, 500000, tzinfo=UTC)  # the commit time
    assert f.shard == "shardId-1" and f.sequence == 5
    # a load record: the message time; a movie: no user
    raw = encode_record(
        DmsRecord("data", "load", "public", "movies", {"movie_id": 3}, timestamp="2026-12-01T00:00:02Z")
    )
    f = letter_facts(letter(raw), MAPPER)
    assert f.key == ("movies", "3") and f.user is None and f.at == at(2)
    # a user (its own id) ; a row rebuilt from the archive (no time)
    f = letter_facts(
        letter(encode_record(DmsRecord("data", "delete", "public", "users", {"user_id": 4}))), MAPPER
    )
    assert f.key == ("users", "4") and f.user == "4" and f.at is None


def test_facts_of_an_event_letter() -> None:
    event = {"gorse-cdc": "event", "user": "u9", "item": "3", "type": "play", "ts": "2026-12-01T00:00:02Z"}
    f = letter_facts(letter(orjson.dumps(event)), MAPPER)
    assert f.key == ("events", "u9", "3", "play") and f.user == "u9" and f.at == at(2) and not f.archived


def test_facts_of_unreadable_letters_have_no_key() -> None:
    for raw in (
        b"not json",
        encode_record(DmsRecord("data", "insert", "public", "ratings", {"user_id": 1})),  # no movie_id
        encode_record(DmsRecord("data", "insert", "public", "other", {"id": 1})),
        encode_record(DmsRecord("control", "drop-table", "public", "ratings")),
    ):
        assert letter_facts(letter(raw), MAPPER).key is None


def test_the_summary_shows_what_was_superseded() -> None:
    s = ReplaySummary(redriven=2, superseded_erased=1, superseded_later=3, unplaced=4)
    line = s.line()
    assert "re-driven 2" in line and "1 by an erasure" in line and "3 by a later change" in line
    assert "newer letter" not in line and "no commit time) 4" in line
    assert "superseded" not in ReplaySummary(redriven=1).line()


def movie_letter() -> StoredLetter:
    raw = encode_record(
        DmsRecord(
            "data",
            "update",
            "public",
            "movies",
            {"movie_id": 3, "title": "t"},
            timestamp="2026-12-01T00:00:02Z",
            commit_timestamp="2026-12-01T00:00:01Z",
        )
    )
    return StoredLetter(DeadLetter(raw, "bad", "X", "shardId-1", "9", "movies", "update", "s"), "k")


class NoStore:
    async def done(self, stored: StoredLetter) -> None:
        raise AssertionError("nothing may leave the store")


async def test_a_redrive_is_refused_when_the_archive_rows_carry_no_commit_time() -> None:
    settings = Settings()
    settings = settings.model_copy(update={"s3": settings.s3.model_copy(update={"timestamp_column": None})})
    stored = [movie_letter()]
    with pytest.raises(FatalError, match=r"re-drive refused: .*commit time.*--unordered.*reconcile"):
        await sort_out(settings, object(), MAPPER, NoStore(), stored, ReplaySummary())
    # unordered: applied without the check
    assert (
        await sort_out(settings, object(), MAPPER, NoStore(), stored, ReplaySummary(), unordered=True)
        == stored
    )


async def test_letters_a_filter_leaves_out_are_neither_applied_here_nor_removed() -> None:
    stored = [movie_letter(), movie_letter()]  # two letters of one key: one would be superseded
    out = await sort_out(
        Settings(), object(), MAPPER, NoStore(), stored, ReplaySummary(), keep=lambda _: False
    )
    assert out == stored  # handed to the applier, which filters them out and counts them


# ---- the later changes: the archive, and the stream for what the archive lacks yet -------------
class FakeKinesis:
    """One shard holding these DMS records (arrival = their message time)."""

    def __init__(self, records: list[DmsRecord]) -> None:
        self.records = records
        self.since: datetime | None = None

    async def list_shards(self, **_: Any) -> dict[str, Any]:
        return {"Shards": [{"ShardId": "shardId-0"}]}

    async def get_shard_iterator(self, **kw: Any) -> dict[str, Any]:
        self.since = kw["Timestamp"]
        return {"ShardIterator": "it"}

    async def get_records(self, **_: Any) -> dict[str, Any]:
        assert self.since is not None
        return {
            "Records": [
                {"Data": encode_record(r), "ApproximateArrivalTimestamp": _time(r.timestamp)}
                for r in self.records
                if _time(r.timestamp) >= self.since  # type: ignore[operator]
            ],
            "MillisBehindLatest": 0,
            "NextShardIterator": None,
        }


def ratings_archive() -> MemoryS3:
    objs = {table_definition_key("dms", "public", t): d.to_json() for t, d in DEFS.items()}
    objs["dms/public/ratings/20261201-000010000.csv"] = encode_csv(
        [["U", "2026-12-01 00:00:05.000000", 1, 10, 4], ["U", "2026-12-01 00:00:06.000000", 2, 10, 3]]
    )
    objs["dms/public/users/20261201-000020000.csv"] = encode_csv([["U", "2026-12-01 00:00:20.000000", 9, 30]])
    return MemoryS3(objs)


def stream_rating(user: int, s: float) -> DmsRecord:
    when = at(s).isoformat().replace("+00:00", "Z")
    data = {"user_id": user, "movie_id": 10, "rating": 5}
    return DmsRecord("data", "update", "public", "ratings", data, timestamp=when, commit_timestamp=when)


async def test_later_changes_from_the_archive_and_the_stream_tail() -> None:
    src = ArchiveSource(
        ratings_archive(), "b", "dms", "public", {"users": True, "ratings": False}, timestamp_column=True
    )
    kinesis = FakeKinesis([stream_rating(3, 1), stream_rating(2, 70), stream_rating(3, 75)])
    keys = {("ratings", "1", "10"), ("ratings", "2", "10"), ("ratings", "3", "10"), ("ratings", "4", "10")}
    found = await later_changes(
        src, kinesis, "s", MAPPER, keys, oldest=at(0), archive_lag_s=1.0, retention_h=24, now=at(80)
    )
    assert found == {
        ("ratings", "1", "10"): at(5),  # the archive
        ("ratings", "2", "10"): at(70),  # the stream has a newer one than the archive
        ("ratings", "3", "10"): at(75),  # the stream only (its record at 1 s is before the tail)
    }
    # the tail starts before the archive's newest time (users file at 20 s) by the lag + 60 s
    assert kinesis.since == at(20 - 61)


async def test_later_changes_refused_when_the_stream_no_longer_holds_what_the_archive_lacks() -> None:
    src = ArchiveSource(
        ratings_archive(), "b", "dms", "public", {"users": True, "ratings": False}, timestamp_column=True
    )
    with pytest.raises(FatalError, match="older than the stream's retention"):
        await later_changes(
            src,
            FakeKinesis([]),
            "s",
            MAPPER,
            {("ratings", "1", "10")},
            oldest=at(0),
            archive_lag_s=1.0,
            retention_h=24,
            now=at(2 * 86_400),
        )
