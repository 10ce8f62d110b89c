"""MariaDB (binlog) -> local DMS -> Kinesis -> consumer -> Gorse, end to end on the real stack:
a MovieLens-shaped load, the edge cases the PostgreSQL path is tested with, live activity;
once the stream drains, `verify` (reading the MySQL source) finds Gorse equal to it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from consumers.verify import render, verify
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from gorse_cdc.source_db import connect_mysql
from producers.activity import run_activity
from producers.synthetic import GeneratorConfig, generate
from tests.integration.consumers.conftest import clear_gorse, drained, running_consumer, stream_tips
from tests.integration.mysql.conftest import DmsThread, saved_position, wait_saved

BIG = 9007199254740993  # 2**53 + 1: wrong by one through a float
TITLE = "Amélie — 天使の詩 🎬 (2001)"  # 4-byte UTF-8 (utf8mb4)


def _sql(s: Settings, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """The statements in one transaction."""
    conn = connect_mysql(s.source_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")  # zero dates allowed, as on many old servers
            for q, p in statements:
                cur.execute(q, p)
        conn.commit()
    finally:
        conn.close()


def _one(s: Settings, q: str, p: tuple[Any, ...] = ()) -> Any:
    conn = connect_mysql(s.source_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(q, p)
            return cur.fetchone()
    finally:
        conn.close()


async def _drain_and_verify(s: Settings, within_s: float = 30.0) -> Any:
    await asyncio.to_thread(wait_saved, s)
    deadline = time.monotonic() + within_s
    while True:
        tips = await asyncio.to_thread(stream_tips, s, s.kinesis.stream_name, {})
        while not drained(s, s.leases.table, tips):
            assert time.monotonic() < deadline + 120, "stream not drained"
            await asyncio.sleep(0.3)
        drift = await verify(s)
        if drift.total == 0 or time.monotonic() > deadline:
            return drift
        await asyncio.sleep(1.0)  # a genre edit is re-told to its likers after the item TTL


async def test_mysql_source_reaches_gorse_exactly(my: Settings) -> None:
    s = my
    await clear_gorse(s)
    generate(s, GeneratorConfig(users=120, movies=150, ratings=2500, seed=41))
    now = datetime.now(UTC).replace(tzinfo=None)
    _sql(
        s,
        ("INSERT INTO movies VALUES (%s, %s, %s, %s)", (900001, TITLE, "0000-00-00", "Comedy|Romance")),
        ("INSERT INTO users VALUES (%s, %s, %s, %s, %s)", (BIG, 33, "F", "writer", "75011")),
        ("INSERT INTO ratings VALUES (%s, %s, %s, %s)", (BIG, 900001, 5, now)),
    )
    dms = DmsThread(s)
    try:
        deadline = time.monotonic() + 60
        while not saved_position(s)[0]:  # the full load is out
            assert time.monotonic() < deadline and dms.thread.is_alive(), dms.result
            await asyncio.sleep(0.2)
        async with running_consumer(s):
            user, movie = _one(s, "SELECT user_id, movie_id FROM ratings WHERE user_id < %s LIMIT 1", (BIG,))
            # delete then re-create a user in one transaction (ratings first: no cascade in a binlog)
            _sql(
                s,
                ("DELETE FROM ratings WHERE user_id = %s", (user,)),
                ("DELETE FROM users WHERE user_id = %s", (user,)),
                ("INSERT INTO users VALUES (%s, %s, %s, %s, %s)", (user, 71, "M", "artist", "99999")),
                ("INSERT INTO ratings VALUES (%s, %s, %s, %s)", (user, movie, 4, now)),
            )
            # a rating across the like threshold and back, in separate transactions and in one
            for r in (2, 5, 1, 4):
                _sql(
                    s,
                    ("UPDATE ratings SET rating = %s WHERE user_id = %s AND movie_id = %s", (r, BIG, 900001)),
                )
            _sql(
                s,
                *[
                    ("UPDATE ratings SET rating = %s WHERE user_id = %s AND movie_id = %s", (r, user, movie))
                    for r in (1, 5, 2, 5)
                ],
            )
            # a genre edit of a liked movie (its likers' liked labels follow), a title edit
            _sql(
                s,
                (
                    "UPDATE movies SET genres = %s, title = %s WHERE movie_id = %s",
                    ("Documentary", TITLE + " ✓", 900001),
                ),
            )
            await asyncio.to_thread(run_activity, s, changes=800, seed=42, per_transaction=3)
            # an erasure (GDPR): the user and every rating of theirs
            victim = _one(
                s, "SELECT user_id FROM ratings WHERE user_id NOT IN (%s, %s) LIMIT 1", (BIG, user)
            )[0]
            _sql(
                s,
                ("DELETE FROM ratings WHERE user_id = %s", (victim,)),
                ("DELETE FROM users WHERE user_id = %s", (victim,)),
            )
            drift = await _drain_and_verify(s)
            assert drift.total == 0, render(drift)
            async with GorseClient.from_settings(s) as g:
                item = await g.get_item("900001")
                # the activity may have edited the title since: its start is ours
                assert item is not None and item.comment.startswith(TITLE + " ✓")
                users = {u.user_id for u in await g.export_users()}
                assert str(BIG) in users and str(victim) not in users
    finally:
        summary = dms.close()
    assert summary.loaded_tables == 3 and summary.changes > 800
