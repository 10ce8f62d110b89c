"""Shared fixtures. Integration tests share ONE local stack per session (started here if it
is not running); unit tests never touch it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import hypothesis
import pytest

from gorse_cdc.settings import Settings

# No per-example deadline: on a busy 2-core machine a Parquet round trip can take 300 ms, and a
# deadline there fails a correct property (seen in CI-like runs), not a slow one.
hypothesis.settings.register_profile("gorse-cdc", deadline=None)
hypothesis.settings.load_profile("gorse-cdc")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[object]:
    """The real local stack (PostgreSQL+wal2json, Gorse, Kinesis emulator, moto)."""
    from entrypoints.stack.components import Stack
    from entrypoints.stack.resources import ensure_all

    s = Stack(settings)
    s.up()
    ensure_all(settings)
    yield s
    if os.environ.get("GORSE_CDC_TEST_STACK_DOWN") == "1":
        s.down()


@pytest.fixture
def fresh_gorse(stack: object) -> object:
    """An empty Gorse (restarted with no data): for tests that compare all of Gorse."""
    stack.reset_gorse()  # type: ignore[attr-defined]
    return stack


@pytest.fixture
def empty_source_db(stack: object, settings: Settings) -> None:
    """Empty source tables (TRUNCATE is not replicated by the local DMS: use DELETE)."""
    import psycopg

    with psycopg.connect(settings.source_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ratings; DELETE FROM movies; DELETE FROM users;")
