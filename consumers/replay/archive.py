"""The S3 archive as a record source: the DMS files of a time range, turned back into DMS
records so they go through the very same decode -> map -> write path.

Order. Each table's files hold its changes in commit order (LOAD files, then CDC files named by
time). Tables are merged (a k-way merge: one file per table in memory) by commit time: the
TimestampColumnName value when the files carry one (as the AWS templates configure), else the
file's time. LOAD rows come first, parents (users, items) before children (feedback); on equal
commit times children come first (a GDPR erasure deletes the ratings, then the user). Per key
this is exact commit order; across tables it is exact to the commit time when the timestamp
column is present, and to the file time without it (a limit of the S3 target's format).

Resume: the position is the last row emitted per table ({"table": "<key>#<row>"}, JSON).
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from consumers.records import ShardRecord
from gorse_cdc.dms.record import DmsRecord, encode_record
from gorse_cdc.dms.s3files import classify_key, rows_with_commit_time, table_definition_key, table_prefix
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError

ARCHIVE_SHARD = "s3-archive"
OPS = {"I": "insert", "U": "update", "D": "delete", "L": "load"}


@dataclass(frozen=True, order=True)
class ArchiveFile:
    kind: int  # 0 LOAD, 1 CDC
    order: str  # hex counter or yyyymmddHHMMSSmmm
    key: str
    table: str = ""
    size: int = 0

    @property
    def at(self) -> datetime | None:
        if self.kind == 0:
            return None
        return datetime.strptime(self.order, "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)


def parse_position(position: str | None) -> dict[str, tuple[str, int]]:
    if not position or not position.startswith("{"):
        return {}
    out: dict[str, tuple[str, int]] = {}
    for table, pos in orjson.loads(position).items():
        key, row = pos.rsplit("#", 1)
        out[table] = (key, int(row))
    return out


def format_position(positions: dict[str, tuple[str, int]]) -> str:
    return orjson.dumps({t: f"{k}#{r}" for t, (k, r) in sorted(positions.items())}).decode()


def _commit_time(value: str | None, file_at: datetime | None) -> str:
    if value:
        return value.replace("T", " ")[:26]
    return file_at.strftime("%Y-%m-%d %H:%M:%S.%f") if file_at else ""


class ArchiveSource:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        schema: str,
        tables: dict[str, bool],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        include_load: bool = False,
        timestamp_column: bool = False,
    ) -> None:
        """``tables``: table name -> True for parent tables (users, items), False for children."""
        self.s3, self.bucket, self.prefix, self.schema = s3, bucket, prefix, schema
        self.tables = tables
        self.since, self.until = since, until
        self.include_load = include_load
        self.timestamp_column = timestamp_column
        self.definitions: dict[str, TableDefinition] = {}

    async def _list(self, prefix: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            out += [(o["Key"], int(o.get("Size", 0))) for o in page.get("Contents", [])]
        return out

    async def files(self) -> dict[str, list[ArchiveFile]]:
        """Each table's files to replay, in commit order."""
        out: dict[str, list[ArchiveFile]] = {}
        for table in self.tables:
            key = table_definition_key(self.prefix, self.schema, table)
            try:
                obj = await self.s3.get_object(Bucket=self.bucket, Key=key)
            except Exception as e:  # botocore's NoSuchKey is generated per client
                where = f"s3://{self.bucket}/{key}"
                raise FatalError(f"no table definition for {self.schema}.{table} at {where}: {e}") from None
            self.definitions[table] = TableDefinition.from_json(await obj["Body"].read())
            files: list[ArchiveFile] = []
            for k, size in await self._list(table_prefix(self.prefix, self.schema, table)):
                name = classify_key(k)
                if name is None or (name.is_load and not self.include_load):
                    continue
                f = ArchiveFile(name.kind, name.order, k, table, size)
                at = f.at
                if at is not None and ((self.since and at < self.since) or (self.until and at > self.until)):
                    continue
                files.append(f)
            out[table] = sorted(files)
        return out

    async def _table_rows(
        self, table: str, files: list[ArchiveFile], after: tuple[str, int] | None
    ) -> AsyncIterator[tuple[tuple[Any, ...], ShardRecord, tuple[str, int]]]:
        keys = [f.key for f in files]
        first, skip = 0, -1
        if after is not None:
            if after[0] not in keys:
                raise FatalError(f"resume position {after}: that file is not in the listing any more")
            first, skip = keys.index(after[0]), after[1]
        parent = self.tables[table]
        rank = list(self.tables).index(table)
        for n in range(first, len(files)):
            f = files[n]
            body = await (await self.s3.get_object(Bucket=self.bucket, Key=f.key))["Body"].read()
            rows = rows_with_commit_time(
                f.key,
                body,
                self.definitions[table],
                has_op=f.kind == 1,
                timestamp_column=self.timestamp_column,
            )
            for i, (op, ts, row) in enumerate(rows):
                if n == first and i <= skip:
                    continue
                data = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
                record = encode_record(DmsRecord("data", OPS[op], self.schema, table, data))
                shard_record = ShardRecord(
                    f"{ARCHIVE_SHARD}:{table}", f"{n + 1}{i:010d}", record, table, f.at
                )
                if f.kind == 0:  # full load: parents first
                    sort_key: tuple[Any, ...] = (0, "", 0 if parent else 1, rank)
                else:  # equal commit times: children first
                    sort_key = (1, _commit_time(ts, f.at), 1 if parent else 0, rank)
                yield sort_key, shard_record, (f.key, i)

    async def records(
        self, files: dict[str, list[ArchiveFile]], resume: str | None = None
    ) -> AsyncIterator[tuple[ShardRecord, str]]:
        """Yield (record, position to checkpoint once it is applied), merged across tables."""
        after = parse_position(resume)
        positions = dict(after)
        iters = {t: self._table_rows(t, fs, after.get(t)).__aiter__() for t, fs in files.items()}
        heap: list[tuple[tuple[Any, ...], int, str, ShardRecord, tuple[str, int]]] = []
        counter = 0

        async def pull(table: str) -> None:
            nonlocal counter
            try:
                key, rec, pos = await iters[table].__anext__()
            except StopAsyncIteration:
                return
            counter += 1
            heapq.heappush(heap, (key, counter, table, rec, pos))

        for t in iters:
            await pull(t)
        while heap:
            _, _, table, rec, pos = heapq.heappop(heap)
            positions[table] = pos
            yield rec, format_position(positions)
            await pull(table)

    @staticmethod
    def total_files(files: dict[str, list[ArchiveFile]]) -> int:
        return sum(len(v) for v in files.values())
