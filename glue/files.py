"""Where the DMS S3 output is read from: the bucket (boto3; moto locally) or a local folder
laid out like the bucket. Both stores are small picklable values, so Spark executors can
read files themselves (no Hadoop-AWS jars, no s3a:// needed anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gorse_cdc.dms.s3files import (
    S3FileName,
    classify_key,
    state_key,
    table_definition_key,
    table_prefix,
)
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError


class SourceFilesError(FatalError):
    """The DMS output cannot be read as a whole (missing table definition, unreadable store)."""


@dataclass(frozen=True)
class StoredFile:
    key: str
    modified: datetime  # LastModified (S3) or mtime (folder), UTC


class FileStore(Protocol):
    def list(self, prefix: str) -> list[StoredFile]: ...
    def read(self, key: str) -> bytes: ...
    def describe(self, key: str) -> str: ...


@dataclass
class S3Store:
    bucket: str
    client_kwargs: dict[str, str]
    _client: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:  # ship to executors without the live client
        return {"bucket": self.bucket, "client_kwargs": self.client_kwargs, "_client": None}

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", **self.client_kwargs)
        return self._client

    def list(self, prefix: str) -> list[StoredFile]:
        out: list[StoredFile] = []
        for page in (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        ):
            for obj in page.get("Contents", []):
                out.append(StoredFile(obj["Key"], obj["LastModified"].astimezone(UTC)))
        return out

    def read(self, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def write(self, key: str, data: bytes, content_type: str = "application/json") -> str:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return self.describe(key)

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class DirStore:
    root: Path

    def list(self, prefix: str) -> list[StoredFile]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return [
            StoredFile(p.relative_to(self.root).as_posix(), datetime.fromtimestamp(p.stat().st_mtime, UTC))
            for p in sorted(base.rglob("*"))
            if p.is_file()
        ]

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes, content_type: str = "application/json") -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def describe(self, key: str) -> str:
        return str(self.root / key)


@dataclass(frozen=True)
class TableFiles:
    """One table's DMS output in commit order: LOAD files by counter, then CDC files by time."""

    table: str
    definition: TableDefinition
    files: tuple[S3FileName, ...]
    newest_cdc: str | None  # the CDC order key (YYYYMMDDHHMMSSmmm) of the newest file read
    newest_modified: datetime | None  # the newest LastModified / mtime among the files read

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files]


def cdc_time(order: str) -> datetime:
    """The UTC time in a CDC file name's order key (YYYYMMDD + HHMMSSmmm)."""
    return datetime.strptime(order[:14], "%Y%m%d%H%M%S").replace(
        microsecond=int(order[14:17]) * 1000, tzinfo=UTC
    )


def discover(store: FileStore, prefix: str, schema: str, table: str) -> TableFiles:
    """List one table's files and read its table definition. Unknown file names are an error:
    a file the job cannot place in commit order must not be skipped silently."""
    def_key = table_definition_key(prefix, schema, table)
    try:
        definition = TableDefinition.from_json(store.read(def_key))
    except (OSError, KeyError, ValueError) as e:
        raise SourceFilesError(f"table definition {store.describe(def_key)} unreadable: {e}") from None
    except Exception as e:  # botocore NoSuchKey and friends
        raise SourceFilesError(f"table definition {store.describe(def_key)} unreadable: {e}") from None
    files: list[S3FileName] = []
    modified: list[datetime] = []
    for f in store.list(table_prefix(prefix, schema, table)):
        name = classify_key(f.key)
        if name is None:
            raise SourceFilesError(f"{store.describe(f.key)} is neither a LOAD nor a CDC file")
        files.append(name)
        modified.append(f.modified)
    files.sort()
    cdc = [f.order for f in files if not f.is_load]
    return TableFiles(
        table, definition, tuple(files), max(cdc) if cdc else None, max(modified) if modified else None
    )


def cutoff_of(tables: list[TableFiles]) -> datetime | None:
    """The job's cut-off: the newest change it can have read (newest CDC file name time, or the
    newest file's write time when that is later, e.g. a full load with no CDC yet)."""
    times: list[datetime] = []
    for tf in tables:
        if tf.newest_cdc:
            times.append(cdc_time(tf.newest_cdc))
        if tf.newest_modified:
            times.append(tf.newest_modified)
    return max(times) if times else None


def newer_files(store: FileStore, prefix: str, schema: str, tf: TableFiles) -> list[S3FileName]:
    """CDC files that appeared after the job read ``tf`` (listed again just before repair)."""
    seen = set(tf.keys)
    out = []
    for f in store.list(table_prefix(prefix, schema, tf.table)):
        name = classify_key(f.key)
        if name is not None and not name.is_load and name.key not in seen:
            out.append(name)
    return sorted(out)


def load_counters(tf: TableFiles) -> tuple[int, ...]:
    """The LOAD file counters read for ``tf`` (LOAD0000000A.csv -> 10)."""
    return tuple(int(f.order, 16) for f in tf.files if f.is_load)


def recorded_load_files(store: FileStore, prefix: str) -> dict[str, int]:
    """LOAD file counts per "schema.table" that a full load recorded beside its files
    (``_dms_state/<task>.json`` {"load_files": {...}}; the local DMS writes it, AWS DMS does
    not). The newest record of a table wins; unreadable records are ignored."""
    import orjson

    out: dict[str, tuple[datetime, int]] = {}
    for f in store.list(state_key(prefix, "x").rsplit("/", 1)[0] + "/"):
        try:
            doc = orjson.loads(store.read(f.key))
            counts = (doc.get("load_files") or {}) if isinstance(doc, dict) else {}
            for table, n in counts.items():
                if isinstance(n, int) and (table not in out or out[table][0] < f.modified):
                    out[table] = (f.modified, n)
        except (OSError, ValueError):
            continue
    return {t: n for t, (_, n) in out.items()}
