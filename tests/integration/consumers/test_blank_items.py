"""A blank item (Gorse's auto-insert for a rating applied after its movie's delete) never
survives: a user's shard lags behind the movie's, so the movie's delete reaches Gorse before an
older rating of it, which makes Gorse insert the item blank; the rating then goes away with its
user's erasure, in one batch with the user's delete (a worker killed and restarted reads its
backlog so, coalesced: the rating's own delete is moot beside the user's). The real consumer,
real Kinesis, real Gorse, the erasure log in DynamoDB (moto)."""

from __future__ import annotations

import asyncio
import random
import time

from consumers.verify import render
from gorse_cdc.gorse import GorseClient
from tests.integration.consumers.conftest import Env, converged, running_consumer, wait_drained


async def until(check: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_a_blank_item_left_by_a_late_rating_goes_with_its_user(env: Env) -> None:
    feed = env.feed
    base = random.randrange(10**6, 10**8)  # ids no other test's rows have
    feed.users, feed.movies = [base], [base]
    user, movie = feed.new_user(), feed.new_movie()
    feed.users, feed.movies = [user["user_id"]], [movie["movie_id"]]
    _, rating = feed.rate()
    feed.conn.commit()
    u, m = str(user["user_id"]), str(movie["movie_id"])
    keys = {"user_id": user["user_id"], "movie_id": movie["movie_id"]}
    # the database: the movie goes (its rating with it), then the user
    feed.conn.execute("DELETE FROM ratings WHERE movie_id = %s", (movie["movie_id"],))
    feed.conn.execute("DELETE FROM movies WHERE movie_id = %s", (movie["movie_id"],))
    feed.conn.execute("DELETE FROM users WHERE user_id = %s", (user["user_id"],))
    feed.conn.commit()
    record = feed._record
    async with GorseClient.from_settings(env.settings) as g:
        async with running_consumer(env.settings):
            feed.put([record("users", "insert", user, 1), record("movies", "insert", movie, 2)])
            await until(lambda: g.get_item(m), "the movie never reached Gorse")
            # the movie's shard is ahead: its delete is applied first
            feed.put([record("movies", "delete", {"movie_id": movie["movie_id"]}, 3)])
            await until(lambda: _gone(g.get_item(m)), "the movie's delete was not applied")
            # the user's shard catches up: the rating makes Gorse insert the movie blank
            feed.put([record("ratings", "insert", rating, 4)])
            await until(lambda: g.get_item(m), "the late rating did not re-create the item")
            blank = await g.get_item(m)
            assert blank is not None and not blank.comment and not blank.labels  # Gorse's blank
            await wait_drained(env)
        # stopped: the rest of the user's shard is read in one batch by the next worker
        feed.put(
            [record("ratings", "delete", keys, 5), record("users", "delete", {"user_id": user["user_id"]}, 6)]
        )
        async with running_consumer(env.settings):
            drift = await converged(env)
            assert await g.get_user(u) is None
            assert await g.get_item(m) is None, "a blank item stayed in Gorse"
    assert drift.total == 0, render(drift)


async def _gone(get: object) -> bool:
    return await get is None  # type: ignore[misc]
