"""The full load of full-load-and-cdc: read every table inside the snapshot the slot exported,
emit "load" records to Kinesis and LOAD files to S3. The snapshot and the slot's start point
coincide exactly, so the CDC that follows misses nothing and repeats nothing."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from gorse_cdc.dms.record import encode_record
from gorse_cdc.dms.s3files import table_prefix
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError
from producers.dms.catalog import load_order, read_definitions
from producers.dms.kinesis_sink import KinesisSink
from producers.dms.records import RecordBuilder, encode
from producers.dms.s3_sink import LOAD_FILE_ROWS, S3Sink

log = logging.getLogger(__name__)
SNAPSHOT = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9A-Fa-f]+)?")


@dataclass
class LoadTargets:
    kinesis: KinesisSink
    s3: S3Sink
    builder: RecordBuilder
    message_format: str
    # LOAD files written per "schema.table": recorded in _dms_state so that the reconcile can
    # tell a whole full load from a partial one (glue.safety)
    load_files: dict[str, int] = field(default_factory=dict)


def clear_table_folder(s3: S3Sink, d: TableDefinition) -> int:
    """DMS's DROP_AND_CREATE on an S3 target: a new full load starts from an empty folder."""
    prefix = table_prefix(s3.prefix, d.schema, d.table)
    n = 0
    for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.client.delete_objects(Bucket=s3.bucket, Delete={"Objects": keys})
            n += len(keys)
    return n


def full_load(dsn: str, snapshot: str, schema: str, t: LoadTargets) -> dict[str, TableDefinition]:
    """Load every table of ``schema`` as of ``snapshot``; return the definitions read in it."""
    if not SNAPSHOT.fullmatch(snapshot):
        raise FatalError(f"unexpected snapshot name {snapshot!r}")
    with psycopg.connect(dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        defs = read_definitions(conn, schema)
        order = load_order(conn, schema, list(defs))
        announce_tables([defs[n] for n in order], t.builder.create_table, t)
        for name in order:
            rows = _load_table(conn, defs[name], t)
            log.info("full load: %s.%s %d rows", schema, name, rows)
    return defs


def _load_table(conn: Any, d: TableDefinition, t: LoadTargets) -> int:
    query = sql.SQL("SELECT {} FROM {}.{}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in d.column_names),
        sql.Identifier(d.schema),
        sql.Identifier(d.table),
    )
    with conn.cursor(name=f"load_{d.table}") as cur:
        cur.itersize = 5000
        cur.execute(query)
        return load_rows(d, cur, t.builder.load, t)


def announce_tables(
    defs: list[TableDefinition], create_table: Callable[[TableDefinition], Any], t: LoadTargets
) -> None:
    """Before the rows (both sources): each table's definition file, its LOAD folder emptied, and
    its create-table control record on the stream, in load order."""
    for d in defs:
        t.s3.write_definition(d)
        clear_table_folder(t.s3, d)
        t.kinesis.add(encode_record(create_table(d), t.message_format), f"{d.schema}.{d.table}")
    t.kinesis.flush()


def load_rows(
    d: TableDefinition, rows: Iterable[Any], load: Callable[[TableDefinition, Any], Any], t: LoadTargets
) -> int:
    """One table's rows (streamed from the source's cursor) to both targets: LOAD records on the
    stream (sent in the background while reading on) and LOAD files of LOAD_FILE_ROWS rows."""
    fmt = t.message_format
    pending: list[list[Any]] = []
    n_file = 1
    total = 0
    for row in rows:
        em = load(d, row)
        t.kinesis.add(encode(em.document, fmt), em.partition_key)
        if t.kinesis.full:
            t.kinesis.flush_in_background(0)  # read on while it sends
        pending.append(em.values)
        total += 1
        if len(pending) >= LOAD_FILE_ROWS:
            t.s3.write_load_file(d, n_file, pending)
            n_file, pending = n_file + 1, []
    t.kinesis.flush()
    if pending:
        t.s3.write_load_file(d, n_file, pending)
    else:
        n_file -= 1
    t.load_files[f"{d.schema}.{d.table}"] = n_file
    return total
