"""Read back what the local DMS wrote (Kinesis shards, S3 files) and compare it with what the
database did (the activity journal). Test-only helpers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import boto3
import psycopg

from gorse_cdc.dms.record import DmsRecord, decode_record
from gorse_cdc.dms.s3files import classify_key, rows_from_object, table_definition_key
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.settings import Settings
from producers.activity import Change
from producers.dms.values import to_json_value

KEYS = {"users": ("user_id",), "movies": ("movie_id",), "ratings": ("user_id", "movie_id")}
OPS = {"I": "insert", "U": "update", "D": "delete"}


@dataclass
class ShardRecord:
    shard: str
    partition_key: str
    record: DmsRecord


def read_stream(s: Settings) -> list[ShardRecord]:
    """Every record of every shard, each shard in order."""
    k = boto3.client("kinesis", **s.aws_client_kwargs("kinesis"))
    out: list[ShardRecord] = []
    for shard in k.list_shards(StreamName=s.kinesis.stream_name)["Shards"]:
        it = k.get_shard_iterator(
            StreamName=s.kinesis.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            resp = k.get_records(ShardIterator=it, Limit=10_000)
            for r in resp["Records"]:
                out.append(ShardRecord(shard["ShardId"], r["PartitionKey"], decode_record(r["Data"])))
            if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                break
            it = resp.get("NextShardIterator")
    return out


def read_s3(
    s: Settings, table: str, timestamp_column: bool = False
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """(LOAD rows, CDC (op, row) in file-name then row order) of one table."""
    c = boto3.client("s3", **s.aws_client_kwargs("s3"))
    prefix = f"{s.s3.prefix}/{s.source_schema}/{table}/"
    raw_def = c.get_object(Bucket=s.s3.bucket, Key=table_definition_key(s.s3.prefix, s.source_schema, table))
    d = TableDefinition.from_json(raw_def["Body"].read())
    names = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=s.s3.bucket, Prefix=prefix):
        names += [n for o in page.get("Contents", []) if (n := classify_key(o["Key"]))]
    load: list[dict[str, Any]] = []
    cdc: list[tuple[str, dict[str, Any]]] = []
    for n in sorted(names):
        body = c.get_object(Bucket=s.s3.bucket, Key=n.key)["Body"].read()
        for op, row in rows_from_object(
            n.key, body, d, has_op=not n.is_load, timestamp_column=timestamp_column
        ):
            (load.append(row) if n.is_load else cdc.append((op, row)))
    return load, cdc


def db_rows(s: Settings, table: str) -> dict[tuple[str, ...], dict[str, Any]]:
    with psycopg.connect(s.source_dsn) as c, c.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f"SELECT * FROM {table}")
        return {key_of(table, r): r for r in cur.fetchall()}


def key_of(table: str, row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in KEYS[table])


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: to_json_value(v) for k, v in row.items()}


def as_text(row: dict[str, Any]) -> dict[str, Any]:
    from gorse_cdc.dms.s3files import format_value

    return {k: format_value(v) for k, v in row.items()}


def journal_by_key(
    journal: list[Change], conv: Any = as_json
) -> dict[tuple[str, tuple[str, ...]], list[tuple[str, Any]]]:
    """Per (table, key): [(operation, converted row or None for deletes)] in commit order."""
    out: dict[tuple[str, tuple[str, ...]], list[tuple[str, Any]]] = defaultdict(list)
    for ch in journal:
        out[(ch.table, tuple(str(v) for v in ch.key))].append((ch.op, conv(ch.row) if ch.row else None))
    return out


def kinesis_cdc_by_key(records: list[ShardRecord]) -> dict[tuple[str, tuple[str, ...]], list[ShardRecord]]:
    """Per (table, key), CDC data records in shard order (one key lives on one shard)."""
    out: dict[tuple[str, tuple[str, ...]], list[ShardRecord]] = defaultdict(list)
    for r in records:
        if r.record.is_data and r.record.operation != "load":
            out[(r.record.table, key_of(r.record.table, r.record.data))].append(r)
    return out


def dedupe(records: list[ShardRecord]) -> list[ShardRecord]:
    """At-least-once -> exactly once: keep the first occurrence of each stream-position."""
    seen: set[str] = set()
    out = []
    for r in records:
        pos = r.record.stream_position
        assert pos is not None
        if pos not in seen:
            seen.add(pos)
            out.append(r)
    return out


def kinesis_view(r: DmsRecord) -> tuple[str, Any]:
    return (r.operation, None if r.is_delete else r.data)


def s3_cdc_by_key(
    table: str, cdc: list[tuple[str, dict[str, Any]]]
) -> dict[tuple[str, tuple[str, ...]], list[tuple[str, Any]]]:
    out: dict[tuple[str, tuple[str, ...]], list[tuple[str, Any]]] = defaultdict(list)
    for op, row in cdc:
        out[(table, key_of(table, row))].append((OPS[op], None if op == "D" else row))
    return out


def is_subsequence(small: list[Any], big: list[Any]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)
