"""Connections to the source database (psycopg 3) for the loaders and generators."""

from __future__ import annotations

from typing import Any

import psycopg

from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

TABLES = ("users", "movies", "ratings")


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(settings.source_dsn, autocommit=autocommit)
    except psycopg.OperationalError as e:
        # the message names host/port/db, never the password
        raise FatalError(f"cannot connect to the source database: {e}") from None


def table_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in TABLES:
        row = conn.execute(f"SELECT count(*) FROM {t}").fetchone()
        out[t] = int(row[0]) if row else 0
    return out


def truncate_all(conn: psycopg.Connection[Any]) -> None:
    """Empty the three tables (note: the local DMS does not replicate TRUNCATE, like DMS)."""
    conn.execute("TRUNCATE ratings, movies, users")
