"""The actual Gorse state as Spark DataFrames.

The driver streams the master's bulk JSONL export (GorseClient.export_lines; paginated
iter_* when the bulk endpoint is unavailable, e.g. a plain gorse-server) into part files of a
staging store: a local folder with a local Spark master, S3 in Glue (executors do not share
the driver's disk). Executors read the parts and normalise each row like ``diff_states``.
Memory stays bounded by one part on the driver.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import orjson
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from glue.expected import canon, key_json
from glue.vocabulary import Kind
from gorse_cdc.errors import GorsePermanentError
from gorse_cdc.gorse import Feedback, GorseClient, Item, User

log = logging.getLogger(__name__)
KINDS = tuple(Kind)
ACTUAL_SCHEMA = StructType(
    [
        StructField("key", StringType(), False),
        StructField("canon", StringType(), False),
        StructField("ts", DoubleType(), True),  # feedback Timestamp, epoch seconds
    ]
)


class StagingStore(Protocol):
    def read(self, key: str) -> bytes: ...
    def write(self, key: str, data: bytes, content_type: str = ...) -> str: ...


class ExportSource(StrEnum):
    """How Gorse was exported (the report's actual_export)."""

    BULK = "bulk"  # the master's JSONL export
    PAGINATED = "paginated"  # iter_users/iter_items/iter_feedback, when bulk is unavailable


@dataclass(frozen=True)
class Export:
    kind: Kind
    parts: list[str]
    rows: int
    source: ExportSource


async def _lines(client: GorseClient, kind: Kind, fallback: list[Kind]) -> AsyncIterator[bytes]:
    try:
        async for line in client.export_lines(kind):
            yield line
        return
    except GorsePermanentError as e:
        if e.status not in (404, 405):
            raise
        log.warning("bulk export of %s unavailable (%s); paginating instead", kind, e.status)
        fallback.append(kind)
    if kind == Kind.USERS:
        async for user in client.iter_users():
            yield orjson.dumps(user.to_json())
    elif kind == Kind.ITEMS:
        async for item in client.iter_items():
            yield orjson.dumps(item.to_json())
    else:
        async for fb in client.iter_feedback():
            yield orjson.dumps(fb.to_json())


async def stage_export(
    client: GorseClient, kind: Kind, store: StagingStore, prefix: str, part_rows: int = 200_000
) -> Export:
    parts: list[str] = []
    buf: list[bytes] = []
    rows = 0
    fallback: list[Kind] = []

    def flush() -> None:
        key = f"{prefix.rstrip('/')}/{kind.value}/part-{len(parts):05d}.jsonl"
        store.write(key, b"\n".join(buf) + b"\n", "application/x-ndjson")
        parts.append(key)
        buf.clear()

    async for line in _lines(client, kind, fallback):
        buf.append(line)
        rows += 1
        if len(buf) >= part_rows:
            flush()
    if buf:
        flush()
    return Export(kind, parts, rows, ExportSource.PAGINATED if fallback else ExportSource.BULK)


def _parse(
    kind: Kind, lines: Iterable[bytes], skip_types: frozenset[str] = frozenset()
) -> Iterator[tuple[Any, ...]]:
    for line in lines:
        if not line.strip():
            continue
        d = orjson.loads(line)
        if kind == Kind.USERS:
            u = User.from_json(d)
            yield (key_json(u.user_id), canon(u), None)
        elif kind == Kind.ITEMS:
            it = Item.from_json(d)
            yield (key_json(it.item_id), canon(it), None)
        else:
            fb = Feedback.from_json(d)
            if fb.feedback_type in skip_types:  # engagement events: not the database's to repair
                continue
            ts = fb.timestamp.timestamp() if fb.timestamp else None
            yield (key_json(*fb.key), canon(fb), ts)


def actual_frame(
    spark: SparkSession, store: StagingStore, export: Export, skip_types: frozenset[str] = frozenset()
) -> DataFrame:
    """``skip_types``: feedback types the database does not hold (the mapping's event types)."""
    if not export.parts:
        return spark.createDataFrame([], ACTUAL_SCHEMA)
    kind = export.kind

    def read(keys: Iterable[str]) -> Iterator[tuple[Any, ...]]:
        for key in keys:
            yield from _parse(kind, store.read(key).splitlines(), skip_types)

    rdd = spark.sparkContext.parallelize(export.parts, len(export.parts)).mapPartitions(read)
    return spark.createDataFrame(rdd, ACTUAL_SCHEMA)
