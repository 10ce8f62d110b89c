"""Order and resume of the S3 archive source (an in-memory object store stands in for S3:
pure logic under test, the real S3 path is covered by tests/integration/replay)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from consumers.replay.archive import ArchiveSource
from gorse_cdc.dms.record import decode_record
from gorse_cdc.dms.s3files import encode_csv, table_definition_key
from gorse_cdc.dms.tables import TableDefinition

DEFS = {
    "users": TableDefinition("public", "users", (("user_id", "bigint"), ("age", "integer")), ("user_id",)),
    "ratings": TableDefinition(
        "public",
        "ratings",
        (("user_id", "bigint"), ("movie_id", "bigint"), ("rating", "smallint")),
        ("user_id", "movie_id"),
    ),
}


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


class MemoryS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    async def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": Body(self.objects[Key])}

    def get_paginator(self, _: str) -> MemoryS3:
        return self

    async def paginate(self, Bucket: str, Prefix: str) -> AsyncIterator[dict[str, Any]]:
        yield {
            "Contents": [
                {"Key": k, "Size": len(v)} for k, v in sorted(self.objects.items()) if k.startswith(Prefix)
            ]
        }


def store() -> MemoryS3:
    objs = {table_definition_key("dms", "public", t): d.to_json() for t, d in DEFS.items()}
    objs["dms/public/users/LOAD00000001.csv"] = encode_csv(
        [["2026-01-01 11:00:00.000000", 1, 30], ["2026-01-01 11:00:00.000000", 2, 40]]
    )
    objs["dms/public/ratings/LOAD00000001.csv"] = encode_csv([["2026-01-01 11:00:00.000000", 1, 10, 5]])
    # one transaction at 12:00:00.5: user 2 erased (users D), its rating deleted (ratings D);
    # the rating file is flushed later than the users file, but carries the same commit time
    objs["dms/public/users/20260101-120001000.csv"] = encode_csv(
        [["I", "2026-01-01 12:00:00.100000", 3, 20], ["D", "2026-01-01 12:00:00.500000", 2, 40]]
    )
    objs["dms/public/ratings/20260101-120002000.csv"] = encode_csv(
        [["I", "2026-01-01 12:00:00.200000", 3, 10, 4], ["D", "2026-01-01 12:00:00.500000", 2, 10, 3]]
    )
    return MemoryS3(objs)


def source(s3: MemoryS3) -> ArchiveSource:
    return ArchiveSource(
        s3, "b", "dms", "public", {"users": True, "ratings": False}, include_load=True, timestamp_column=True
    )


async def collect(
    src: ArchiveSource, resume: str | None = None
) -> list[tuple[str, str, str, dict[str, Any]]]:
    files = await src.files()
    out = []
    async for rec, pos in src.records(files, resume):
        d = decode_record(rec.data)
        out.append((d.table, d.operation, pos, d.data))
    return out


async def test_loads_parents_first_then_commit_time_children_first_on_ties() -> None:
    rows = await collect(source(store()))
    order = [(t, op, tuple(d.values())[:2]) for t, op, _, d in rows]
    assert order == [
        ("users", "load", ("1", "30")),
        ("users", "load", ("2", "40")),
        ("ratings", "load", ("1", "10")),
        ("users", "insert", ("3", "20")),  # 12:00:00.1
        ("ratings", "insert", ("3", "10")),  # 12:00:00.2
        ("ratings", "delete", ("2", "10")),  # 12:00:00.5, the child first ...
        ("users", "delete", ("2", "40")),  # ... then the parent
    ]


async def test_resume_from_any_position_yields_exactly_the_rest() -> None:
    full = await collect(source(store()))
    for cut in range(len(full)):
        rest = await collect(source(store()), full[cut][2])
        assert [(*r[:2], r[3]) for r in rest] == [(*r[:2], r[3]) for r in full[cut + 1 :]]
