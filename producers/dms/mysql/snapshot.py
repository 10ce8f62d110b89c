"""The full load of full-load-and-cdc for a MySQL source: every table read inside one
consistent snapshot whose binlog position is recorded, so the CDC that follows starts exactly
there (nothing missed, nothing repeated).

MariaDB tells the position of a consistent snapshot without any lock
(``START TRANSACTION WITH CONSISTENT SNAPSHOT`` then the status variables
``binlog_snapshot_file`` / ``binlog_snapshot_position``). MySQL has no such variables: there
the position is taken under a brief ``FLUSH TABLES WITH READ LOCK`` (RELOAD privilege) around
the snapshot's start, as mysqldump --single-transaction --master-data does.
"""

from __future__ import annotations

import logging
from typing import Any

import pymysql.cursors

from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.source_db import connect_mysql, quote
from producers.dms.full_load import LoadTargets, announce_tables, load_rows
from producers.dms.mysql.catalog import load_order, read_definitions
from producers.dms.mysql.records import BinlogRecordBuilder

log = logging.getLogger(__name__)


def master_status(cur: Any) -> tuple[str, int]:
    """The binlog's current end (SHOW MASTER STATUS; MySQL 8.4: SHOW BINARY LOG STATUS)."""
    try:
        cur.execute("SHOW MASTER STATUS")
    except pymysql.err.ProgrammingError:
        cur.execute("SHOW BINARY LOG STATUS")
    row = cur.fetchone()
    if not row:
        return "", 0
    return str(row[0]), int(row[1])


def start_snapshot(conn: Any) -> tuple[str, int]:
    """Open a consistent snapshot on ``conn``; returns its binlog position."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        if status.get("binlog_snapshot_file"):  # MariaDB
            return status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
        conn.rollback()
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            return master_status(cur)
        finally:
            cur.execute("UNLOCK TABLES")


def full_load(
    dsn: str, database: str, builder: BinlogRecordBuilder, t: LoadTargets
) -> tuple[dict[str, TableDefinition], tuple[str, int]]:
    """Load every table of ``database`` as of one snapshot; its definitions and binlog position."""
    conn = connect_mysql(dsn)
    try:
        position = start_snapshot(conn)
        log.info("full load: snapshot at %s:%d", *position)
        with conn.cursor() as cur:
            defs = read_definitions(cur, database)
            order = load_order(cur, database, list(defs))
        announce_tables([defs[n] for n in order], builder.create_table, t)
        for name in order:
            rows = _load_table(conn, defs[name], builder, t)
            log.info("full load: %s.%s %d rows", database, name, rows)
        conn.rollback()
    finally:
        conn.close()
    return defs, position


def _load_table(conn: Any, d: TableDefinition, builder: BinlogRecordBuilder, t: LoadTargets) -> int:
    query = f"SELECT {', '.join(quote(c) for c in d.column_names)} FROM {quote(d.schema)}.{quote(d.table)}"
    with conn.cursor(pymysql.cursors.SSCursor) as cur:  # streamed, not held in memory
        cur.execute(query)
        return load_rows(d, cur, builder.load, t)
