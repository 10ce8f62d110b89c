from __future__ import annotations

import asyncio

from glue.diff import changed_fields, diff_kind
from glue.expected import KIND_SCHEMA, canon, key_json
from glue.guard import Deferred, touched_by
from gorse_cdc.gorse import Feedback, User
from gorse_cdc.mapping import Mapper
from gorse_cdc.retry import RateLimiter


def test_diff_classes_and_fields(spark) -> None:
    a, b = User("1", {"age": 3}), User("1", {"age": 4})
    exp = spark.createDataFrame(
        [
            (key_json("1"), canon(a), "{}", None),
            (key_json("2"), canon(User("2")), "{}", None),
            (key_json("5"), None, None, "users: bad row"),
        ],
        KIND_SCHEMA,
    )
    act = spark.createDataFrame(
        [
            (key_json("1"), canon(b), None),
            (key_json("3"), canon(User("3")), None),
            (key_json("5"), canon(User("5")), None),
        ],
        "key string, canon string, ts double",
    )
    rows = {r["key"]: r for r in diff_kind("users", exp, act).collect()}
    assert {k: r["cls"] for k, r in rows.items()} == {
        key_json("1"): "changed",
        key_json("2"): "missing",
        key_json("3"): "extra",
    }
    assert changed_fields(rows[key_json("1")]["exp_canon"], rows[key_json("1")]["act_canon"]) == {
        "Labels": [{"age": 3.0}, {"age": 4.0}]
    }


def test_feedback_both_types_is_one_extra_row(spark) -> None:
    like = Feedback("like", "1", "2", 5.0)
    exp = spark.createDataFrame([(key_json(*like.key), canon(like), "{}", None)], KIND_SCHEMA)
    unlike = Feedback("unlike", "1", "2", 5.0)
    act = spark.createDataFrame(
        [(key_json(*like.key), canon(like), 0.0), (key_json(*unlike.key), canon(unlike), 0.0)],
        "key string, canon string, ts double",
    )
    rows = diff_kind("feedback", exp, act).collect()
    assert [(r["cls"], r["key"]) for r in rows] == [("extra", key_json("unlike", "1", "2"))]


def test_rate_limiter_spaces_batches() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    lim = RateLimiter(100.0, clock=lambda: now[0], sleep=sleep)

    async def run() -> None:
        for _ in range(3):
            await lim.acquire(50)

    asyncio.run(run())
    assert slept == [0.5, 0.5]  # 150 writes at 100/s: the 2nd and 3rd batches wait


def test_guard_defers_what_newer_changes_touch() -> None:
    d = Deferred()
    m = Mapper()
    touched_by(
        m,
        "ratings",
        [("I", {"user_id": "7", "movie_id": "70", "rating": "5", "rated_at": "2024-01-01 00:00:00"})],
        d,
    )
    touched_by(m, "movies", [("U", {"movie_id": "71", "title": "t", "release_date": None, "genres": "X"})], d)
    touched_by(m, "users", [("D", {"user_id": "8"})], d)
    touched_by(
        m, "ratings", [("I", {"user_id": "9", "movie_id": "90", "rating": "oops", "rated_at": None})], d
    )
    assert d.pairs == {("7", "70"), ("9", "90")} and d.items == {"71"} and d.users == {"7", "8", "9"}
    assert (
        d.covers("feedback", ["unlike", "7", "70"])
        and d.covers("users", ["8"])
        and not d.covers("items", ["70"])
    )
