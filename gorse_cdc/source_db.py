"""Connections to a MySQL-compatible source (MySQL, MariaDB, RDS, Aurora MySQL) by DSN.

DSN form: ``mysql://user:password@host:port/database`` (port 3306 when absent). Text is
utf8mb4 and the session's time zone UTC, so DATETIME values read as they were written (the
pipeline stores UTC, like PostgreSQL's ``timestamp without time zone`` columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from gorse_cdc.errors import FatalError


@dataclass(frozen=True)
class MySqlDsn:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, dsn: str) -> MySqlDsn:
        u = urlsplit(dsn)
        if u.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise FatalError(f"not a MySQL DSN (mysql://user:password@host:port/database): {u.scheme}://...")
        return cls(
            u.hostname or "localhost",
            u.port or 3306,
            unquote(u.username or ""),
            unquote(u.password or ""),
            u.path.strip("/"),
        )

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` (and mysql-replication's settings)."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
        }

    def __str__(self) -> str:
        return f"MySQL at {self.host}:{self.port}"


def connect_mysql(dsn: str, *, autocommit: bool = False, database: bool = True) -> Any:
    """A PyMySQL connection (UTC session, utf8mb4). Raises FatalError when unreachable."""
    import pymysql

    d = MySqlDsn.parse(dsn)
    try:
        conn = pymysql.connect(
            **d.connect_args(),
            database=d.database if database else None,
            autocommit=autocommit,
            init_command="SET time_zone = '+00:00'",
        )
    except pymysql.err.OperationalError as e:
        raise FatalError(f"cannot connect to {d}: {e.args[-1] if e.args else e}") from None
    return conn


def column_types(cur: Any, database: str) -> dict[str, dict[str, str]]:
    """table -> column -> COLUMN_TYPE, for every table of ``database``."""
    cur.execute(
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
        (database,),
    )
    out: dict[str, dict[str, str]] = {}
    for table, column, type_ in cur.fetchall():
        out.setdefault(str(table), {})[str(column)] = str(type_)
    return out


def read_mysql_rows(dsn: str, tables: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables`` (name -> columns) in one consistent snapshot, each value as DMS
    would carry it (gorse_cdc.dms.mysql_types: zero dates null, unsigned exact, ...)."""
    from gorse_cdc.dms.mysql_types import to_dms_value

    out: dict[str, list[dict[str, Any]]] = {}
    conn = connect_mysql(dsn)
    try:
        with conn.cursor() as cur:
            types = column_types(cur, MySqlDsn.parse(dsn).database)
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            for table, cols in tables.items():
                ts = [types.get(table, {}).get(c, "") for c in cols]
                cur.execute(f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table)}")
                out[table] = [
                    {c: to_dms_value(t, v) for c, t, v in zip(cols, ts, row, strict=True)}
                    for row in cur.fetchall()
                ]
        conn.rollback()
    finally:
        conn.close()
    return out


def quote(identifier: str) -> str:
    """A MySQL identifier in backquotes."""
    return "`" + identifier.replace("`", "``") + "`"
