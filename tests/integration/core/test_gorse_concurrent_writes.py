"""16 concurrent feedback writers on Gorse's SQL stores, with no deadlock and no feedback lost:
a real gorse-in-one on a fresh database of the stack's PostgreSQL, and one on the project's own
MariaDB (Debian's mariadb-server: Gorse's MySQL store). The writers share hot items (what makes
Gorse 0.5.11's map-ordered statements deadlock), and rate items that another writer creates at
the same moment (entrypoints.stack.sql_gorse). The client's write locks
(gorse_cdc.gorse.write_locks) keep concurrent writes key-disjoint.

Counted: deadlock answers the writers saw (written again), deadlocks the client retried itself,
and Gorse's own log lines about them: all 0. Gorse's export must hold exactly what was written,
values included, and every item created during the load with its title (not a blank row).

GORSE_CDC_DEADLOCK_TEST_S: how long the writers run (default 15 s to keep the suite fast; the
issue's proof is 60). GORSE_CDC_DEADLOCK_TEST_UNGUARDED=1 runs the same load without the write
locks (the code before them, without its one-writer bound): it fails, with the counts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from entrypoints.stack.sql_gorse import (
    SqlGorse,
    concurrent_load,
    gorse_on,
    mariadb_database,
    postgres_database,
)
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings

WRITERS = 16
SECONDS = float(os.environ.get("GORSE_CDC_DEADLOCK_TEST_S", "15"))
UNGUARDED = os.environ.get("GORSE_CDC_DEADLOCK_TEST_UNGUARDED") == "1"


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def sql_store_gorse(
    request: pytest.FixtureRequest,
    settings: Settings,
    stack: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SqlGorse]:
    database = postgres_database if request.param == "postgres" else mariadb_database
    with database(settings) as dsn, gorse_on(settings, dsn, tmp_path_factory.mktemp(request.param)) as gorse:
        yield gorse


async def test_concurrent_feedback_writers_never_deadlock_nor_lose_feedback(
    sql_store_gorse: SqlGorse, settings: Settings
) -> None:
    g = settings.gorse
    partitions = None if UNGUARDED else g.write_partitions
    client = GorseClient(
        sql_store_gorse.url, g.api_key.get_secret_value(), max_connections=32, write_partitions=partitions
    )
    async with client:
        load = await concurrent_load(client, writers=WRITERS, seconds=SECONDS)
        exported = {
            (f.feedback_type, f.user_id, f.item_id): f.value
            for f in await client.export_feedback()
            if f.user_id.startswith(load.tag)
        }
        items = {i.item_id: i for i in await client.export_items() if i.item_id.startswith(load.tag)}
    retried = client.write_locks.deadlocks if client.write_locks else 0
    logged = sql_store_gorse.deadlocks_logged()
    print(
        f"\n{sql_store_gorse.store}: {WRITERS} writers, {load.seconds:.0f} s, "
        f"{load.rows} rows in {load.calls} batches ({load.rows_per_s:,.0f} rows/s), "
        f"{len(load.new_items)} items created during the load; "
        f"deadlocks: {load.deadlocks} answered to the writers, {retried} retried by the client, "
        f"{logged} in Gorse's log; errors {dict(load.errors)}"
    )
    assert load.rows > 0 and load.new_items
    assert (load.deadlocks, retried, logged) == (0, 0, 0)
    assert not load.errors
    missing = load.feedback.keys() - exported.keys()
    assert not missing, f"{len(missing)} feedback rows dropped, e.g. {sorted(missing)[:3]}"
    assert exported == load.feedback  # nothing extra, no value set back
    blank = sorted(i for i in load.new_items if i not in items or not items[i].comment)
    assert not blank, f"items created during the load left blank: {blank[:3]}"
