"""Write DMS S3 output (LOAD + CDC files, table definitions) exactly as gorse_cdc.dms.s3files
names and encodes it -- to a folder or to an S3 bucket -- for the reconcile's tests and bench."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gorse_cdc.dms.s3files import cdc_file_key, encode_csv, load_file_key, table_definition_key
from gorse_cdc.dms.tables import TableDefinition

OTT_TABLES = {
    "users": TableDefinition(
        "public",
        "users",
        (
            ("user_id", "bigint"),
            ("age", "integer"),
            ("gender", "text"),
            ("occupation", "text"),
            ("zip", "text"),
        ),
        ("user_id",),
    ),
    "movies": TableDefinition(
        "public",
        "movies",
        (("movie_id", "bigint"), ("title", "text"), ("release_date", "date"), ("genres", "text")),
        ("movie_id",),
    ),
    "ratings": TableDefinition(
        "public",
        "ratings",
        (("user_id", "bigint"), ("movie_id", "bigint"), ("rating", "smallint"), ("rated_at", "timestamp")),
        ("user_id", "movie_id"),
    ),
}
Put = Callable[[str, bytes], None]


def dir_put(root: Path) -> Put:
    def put(key: str, data: bytes) -> None:
        p = root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    return put


def s3_put(client: Any, bucket: str) -> Put:
    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data)

    return put


@dataclass
class DmsWriter:
    put: Put
    prefix: str = "dms"
    schema: str = "public"
    gzip_: bool = False
    date_partition: bool = False
    clock: datetime = field(default_factory=lambda: datetime(2024, 7, 29, 0, 0, tzinfo=UTC))
    _load_n: dict[str, itertools.count[int]] = field(default_factory=dict)

    def definitions(self, tables: dict[str, TableDefinition] | None = None) -> None:
        for name, d in (tables or OTT_TABLES).items():
            self.put(table_definition_key(self.prefix, self.schema, name), d.to_json())

    def load(self, table: str, rows: Sequence[Sequence[Any]], *, with_op: bool = False) -> str:
        n = next(self._load_n.setdefault(table, itertools.count(1)))
        key = load_file_key(self.prefix, self.schema, table, n, gzip_=self.gzip_)
        body = [["I", *r] for r in rows] if with_op else rows
        self.put(key, encode_csv(body, gzip_=self.gzip_))
        return key

    def cdc(
        self, table: str, changes: Sequence[tuple[str, Sequence[Any]]], when: datetime | None = None
    ) -> str:
        """changes: (op in I/U/D, row values in the table's column order)."""
        if when is None:
            self.clock += timedelta(seconds=61)
            when = self.clock
        key = cdc_file_key(
            self.prefix, self.schema, table, when, date_partition=self.date_partition, gzip_=self.gzip_
        )
        self.put(key, encode_csv([[op, *row] for op, row in changes], gzip_=self.gzip_))
        return key
