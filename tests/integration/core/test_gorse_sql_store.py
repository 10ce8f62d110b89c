"""Gorse on a SQL data store, as the deployments run it (gorse.yaml: PostgreSQL or MySQL), not
the stack's SQLite: a second real gorse-in-one on a fresh database of the stack's PostgreSQL.

Gorse 0.5.11 inserts a feedback batch's users and items in Go map order, so concurrent batches
that share items deadlock there (500 "pq: deadlock detected (40P01)"); the freshness bench's
full load retried them for minutes. With ``gorse.feedback_writers = 1`` one process sends one
batch at a time and none deadlocks."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Iterator

import pytest

from entrypoints.stack.sql_gorse import gorse_on, postgres_database
from gorse_cdc.errors import GorseRequestError
from gorse_cdc.gorse import Feedback, GorseClient
from gorse_cdc.settings import Settings

CALLERS = 16


@pytest.fixture(scope="module")
def sql_gorse(settings: Settings, stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a gorse-in-one whose data and cache stores are a new PostgreSQL database."""
    with (
        postgres_database(settings) as dsn,
        gorse_on(settings, dsn, tmp_path_factory.mktemp("gorse-sql")) as g,
    ):
        yield g.url


async def hammer(url: str, settings: Settings, feedback_writers: int | None) -> collections.Counter[str]:
    """CALLERS callers PUT batches of 100 likes over 40 shared items for 4 s; the errors."""
    tag = uuid.uuid4().hex[:6]
    errors: collections.Counter[str] = collections.Counter()
    g = settings.gorse
    client = GorseClient(url, g.api_key.get_secret_value(), feedback_writers=feedback_writers)
    async with client:
        end = time.monotonic() + 4.0

        async def caller(w: int) -> None:
            n = 0
            while time.monotonic() < end:
                n += 1
                batch = [
                    Feedback("like", f"{tag}-u{w}-{n}-{j % 25}", f"{tag}-i{j % 40}", 1.0) for j in range(100)
                ]
                try:
                    await client.put_feedback(batch)
                except GorseRequestError as e:
                    errors["deadlock" if "deadlock" in str(e) else str(e)[:80]] += 1

        await asyncio.gather(*(caller(w) for w in range(CALLERS)))
    return errors


async def test_one_feedback_writer_never_deadlocks_a_sql_store(sql_gorse: str, settings: Settings) -> None:
    assert await hammer(sql_gorse, settings, feedback_writers=1) == collections.Counter()
