"""A genre edit of a movie many users like, on the real stack: its likers are told in steps of
at most ``fan_out_per_plan`` per plan (fan-out records on the movie's shard carry the rest),
every liker's labels end exact, and a reload of the unchanged movie row with a cold item cache
tells nobody (issue 20, item 5)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from consumers.verify import render
from tests.integration.consumers.conftest import Env, converged, running_consumer, wait_drained

LIKERS = 240
PER_PLAN = 50


def liked_movie(env: Env) -> dict[str, Any]:
    """LIKERS users who all rate one movie 5 (a like), loaded as DMS full-load records."""
    f = env.feed
    records = [f._record("users", "load", f.new_user(), 0) for _ in range(LIKERS)]
    movie = f.new_movie()
    records.append(f._record("movies", "load", movie, 0))
    for uid in f.users:
        row = f._row(
            "INSERT INTO ratings VALUES (%s,%s,%s,%s) RETURNING *",
            (uid, movie["movie_id"], 5, datetime(2024, 1, 1, 12, 0, 0)),
        )
        assert row is not None
        f.ratings.add((uid, movie["movie_id"]))
        records.append(f._record("ratings", "load", row, 0))
    f.conn.commit()
    f.put(records)
    return movie


async def test_a_popular_movies_edit_tells_its_likers_in_bounded_steps(env: Env) -> None:
    movie = liked_movie(env)
    async with running_consumer(env.settings) as consumer:
        sink = consumer.parts.applier.sink  # type: ignore[attr-defined]
        sink.fan_out_per_plan = PER_PLAN
        told: list[int] = []  # refresh records per publish
        publish = sink.publisher.publish

        async def counted(refreshes: Mapping[str, Any]) -> None:
            told.append(len(refreshes))
            await publish(refreshes)

        sink.publisher.publish = counted
        await wait_drained(env)
        told.clear()

        f = env.feed
        edit = "UPDATE movies SET genres=%s WHERE movie_id=%s RETURNING *"
        row = f._row(edit, ("Documentary|War", movie["movie_id"]))
        f.conn.commit()
        assert row is not None
        f.txid += 1
        f.put([f._record("movies", "update", row, 1)])
        drift = await converged(env)
        assert drift.total == 0, render(drift)  # every liker's labels carry the new genres
        assert told and max(told) <= PER_PLAN, told
        assert sum(told) >= LIKERS and len([n for n in told if n]) >= LIKERS // PER_PLAN, told

        told.clear()
        sink.shards_taken()  # a cold cache, as after a restart or a rebalance
        f.put([f._record("movies", "load", row, 0)])  # the same row again: a table reload
        await wait_drained(env)
        assert sum(told) == 0, told
