"""Connections to the source database for the loaders and generators, by engine.

PostgreSQL through psycopg 3; a MySQL-compatible source through PyMySQL, wrapped so that the
callers use one surface: ``conn.execute(sql, params)`` returning a cursor (fetchone, fetchall,
iteration), ``commit()``, ``rollback()``, a context manager that commits on success, and
``bulk_insert`` (COPY on PostgreSQL, multi-row INSERTs on MySQL). Placeholders are ``%s`` on
both. SQL sent through here keeps to what both engines speak.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings
from gorse_cdc.source_db import connect_mysql, quote

TABLES = ("users", "movies", "ratings")
INSERT_BATCH = 2000


class MySqlConnection:
    """A PyMySQL connection with psycopg's ``execute`` shape."""

    engine = "mysql"

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Any:
        cur = self.raw.cursor()
        cur.execute(query, params)
        return cur

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> MySqlConnection:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.raw.commit()
            else:
                self.raw.rollback()
        finally:
            self.raw.close()


SourceConnection = Any  # psycopg.Connection or MySqlConnection


def connect(settings: Settings, *, autocommit: bool = False) -> SourceConnection:
    if settings.source.engine == "mysql":
        return MySqlConnection(connect_mysql(settings.source_dsn, autocommit=autocommit))
    try:
        return psycopg.connect(settings.source_dsn, autocommit=autocommit)
    except psycopg.OperationalError as e:
        # the message names host/port/db, never the password
        raise FatalError(f"cannot connect to the source database: {e}") from None


def is_mysql(conn: SourceConnection) -> bool:
    return isinstance(conn, MySqlConnection)


def bulk_insert(
    conn: SourceConnection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert ``rows`` into ``table``: COPY on PostgreSQL, batched INSERTs on MySQL."""
    n = 0
    if is_mysql(conn):
        query = (
            f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        batch: list[Sequence[Any]] = []
        with conn.raw.cursor() as cur:
            for row in rows:
                batch.append(row)
                n += 1
                if len(batch) >= INSERT_BATCH:
                    cur.executemany(query, batch)  # PyMySQL sends one multi-row INSERT
                    batch = []
            if batch:
                cur.executemany(query, batch)
        return n
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)
            n += 1
    return n


def table_counts(conn: SourceConnection) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in TABLES:
        row = conn.execute(f"SELECT count(*) FROM {t}").fetchone()
        out[t] = int(row[0]) if row else 0
    return out


def truncate_all(conn: SourceConnection) -> None:
    """Empty the three tables (note: the local DMS does not replicate TRUNCATE, like DMS)."""
    if is_mysql(conn):
        for t in ("ratings", "movies", "users"):  # children first: InnoDB refuses TRUNCATE of a parent
            conn.execute(f"DELETE FROM {t}")
        return
    conn.execute("TRUNCATE ratings, movies, users")
