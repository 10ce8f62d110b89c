"""Re-drive the dead-letter store after a fix: every letter goes through the same applier;
an applied letter leaves the store, one that fails again goes back with its new reason.

Before that, ``sort_out`` removes the letters a re-drive must not apply (they would set a key
back: consumers.replay.superseded): letters of erased users, letters older than another letter
of their key, letters whose key has a later change in the CDC archive or on the stream."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import orjson

from consumers.deadletter import DeadLetter
from consumers.deadletter_stores import SqsDeadLetterStore, s3_key
from consumers.records import ShardRecord
from consumers.replay.archive import ArchiveSource
from consumers.replay.plan import ReplaySummary
from consumers.replay.superseded import (
    Key,
    LetterFacts,
    describe_dropped,
    erased_users,
    later_changes,
    letter_facts,
    plan_redrive,
)
from consumers.sink.erasures import DynamoErasureLog
from gorse_cdc.errors import FatalError
from gorse_cdc.mapping import Mapper
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class StoredLetter:
    letter: DeadLetter
    handle: str  # S3 key or SQS receipt handle
    overflow: tuple[str, str] | None = None  # (bucket, key) of a large SQS letter kept in S3


@dataclass
class CollectingStore:
    """A DeadLetterStore that keeps what the applier refuses again (the caller stores it)."""

    letters: list[DeadLetter] = field(default_factory=list)

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def as_record(letter: DeadLetter) -> ShardRecord:
    return ShardRecord(letter.shard_id, letter.sequence_number, letter.raw, "", letter.dead_lettered_at)


class S3Letters:
    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix.strip("/")

    async def fetch(self, limit: int) -> list[StoredLetter]:
        out: list[StoredLetter] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            for obj in page.get("Contents", []):
                body = await (await self.s3.get_object(Bucket=self.bucket, Key=obj["Key"]))["Body"].read()
                out.append(StoredLetter(DeadLetter.from_json(orjson.loads(body)), obj["Key"]))
                if len(out) >= limit:
                    return out
        return out

    async def done(self, stored: StoredLetter) -> None:
        await self.s3.delete_object(Bucket=self.bucket, Key=stored.handle)

    async def again(self, stored: StoredLetter, letter: DeadLetter) -> None:
        """Store the letter with its new reason (same key: it replaces the old one)."""
        key = s3_key(self.prefix, letter)
        await self.s3.put_object(Bucket=self.bucket, Key=key, Body=letter.to_bytes())
        if key != stored.handle:
            await self.s3.delete_object(Bucket=self.bucket, Key=stored.handle)


class SqsLetters:
    """Letters in SQS; large ones point to their body in S3 (SqsDeadLetterStore's overflow)."""

    def __init__(self, store: SqsDeadLetterStore, visibility_s: int = 300) -> None:
        self.store = store
        self.sqs = store.client
        self.visibility_s = visibility_s

    async def fetch(self, limit: int) -> list[StoredLetter]:
        out: list[StoredLetter] = []
        url = await self.store._queue_url()
        while len(out) < limit:
            resp = await self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, limit - len(out)),
                VisibilityTimeout=self.visibility_s,
                WaitTimeSeconds=1,
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                break
            for m in msgs:
                doc = orjson.loads(m["Body"])
                overflow = None
                if "s3_pointer" in doc and self.store.overflow is not None:
                    bucket, key = doc["s3_pointer"][len("s3://") :].split("/", 1)
                    s3 = self.store.overflow.client
                    doc = orjson.loads(await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read())
                    overflow = (bucket, key)
                out.append(StoredLetter(DeadLetter.from_json(doc), m["ReceiptHandle"], overflow))
        return out

    async def done(self, stored: StoredLetter) -> None:
        await self.sqs.delete_message(QueueUrl=await self.store._queue_url(), ReceiptHandle=stored.handle)
        if stored.overflow is not None and self.store.overflow is not None:
            bucket, key = stored.overflow
            await self.store.overflow.client.delete_object(Bucket=bucket, Key=key)

    async def again(self, stored: StoredLetter, letter: DeadLetter) -> None:
        """The letter with its new reason goes back first, then the old message goes (a crash in
        between leaves both: at-least-once, never none)."""
        await self.store.put([letter])
        await self.sqs.delete_message(QueueUrl=await self.store._queue_url(), ReceiptHandle=stored.handle)


class LetterStore(Protocol):
    async def done(self, stored: StoredLetter) -> None: ...


UNORDERED_HINT = (
    "pass --unordered to re-drive without that check (it may set keys back: run the reconcile after)"
)


async def sort_out(
    settings: Settings,
    clients: Any,
    mapper: Mapper,
    store: LetterStore,
    stored: list[StoredLetter],
    summary: ReplaySummary,
    *,
    unordered: bool = False,
    dry_run: bool = False,
    keep: Callable[[DeadLetter], bool] = lambda _: True,
) -> list[StoredLetter]:
    """The letters to apply (in the order given); the superseded ones leave the store (not in
    a dry run) and are counted; letters that cannot be ordered stay. Letters that ``keep``
    refuses (--tables / --operations) are returned as they are: the applier filters them out
    and counts them. Raises FatalError when the later changes cannot be read, unless
    ``unordered``."""
    given = stored
    passed = [x for x in given if not keep(x.letter)]
    stored = [x for x in given if keep(x.letter)]
    letters = [x.letter for x in stored]
    facts = [letter_facts(x, mapper) for x in letters]
    c = settings.consumer
    erased: set[str] = set()
    users = erased_users(facts)
    if users and c.erasure_guard:
        try:
            erased = await DynamoErasureLog(clients.dynamodb, c.erasures_table).erased(users)
        except Exception as e:  # no re-drive may write a user it cannot check (no --unordered)
            why = f"cannot read the erasure log {c.erasures_table}: {e}"
            raise FatalError(f"re-drive refused: {why}") from None
    elif users:
        log.warning("consumer.erasure_guard is off: letters are not checked against an erasure log")
    later = None if unordered else await _later(settings, clients, mapper, facts)
    plan = plan_redrive(facts, erased, later)
    summary.superseded_erased += len(plan.erased)
    summary.superseded_older += len(plan.older)
    summary.superseded_later += len(plan.later)
    summary.unplaced += len(plan.unplaced)
    for what, indexes in (
        ("an erasure", plan.erased),
        ("a newer letter of their key", plan.older),
        ("a later change of their key", plan.later),
    ):
        if indexes:
            log.info(
                "%s%d letters superseded by %s (per table %s)%s",
                "[dry-run] " if dry_run else "",
                len(indexes),
                what,
                describe_dropped(letters, indexes),
                "" if dry_run else ": removed from the store",
            )
            if not dry_run:
                for i in indexes:
                    await store.done(stored[i])
    if plan.unplaced:
        log.warning(
            "%d letters of source tables carry no commit time (letters of an archive replay: per "
            "table %s): they stay in the store; replay the archive for them (gorse-cdc replay s3), or %s",
            len(plan.unplaced),
            describe_dropped(letters, plan.unplaced),
            UNORDERED_HINT,
        )
    chosen = {id(stored[i]) for i in plan.apply} | {id(x) for x in passed}
    return [x for x in given if id(x) in chosen]


async def _later(
    settings: Settings, clients: Any, mapper: Mapper, facts: Sequence[LetterFacts]
) -> dict[Key, Any]:
    keys: set[Key] = {f.key for f in facts if f.key is not None and f.archived and f.at is not None}
    if not keys:
        return {}
    s = settings
    lag_s = s.s3.cdc_max_batch_interval_s
    oldest = min(f.at for f in facts if f.key in keys and f.at is not None)
    if not s.s3.timestamp_column or s.s3.data_format != "csv":
        raise FatalError(
            "re-drive refused: the CDC archive's rows carry no commit time (settings.s3.timestamp_column "
            "unset, or Parquet), so whether a later change of a letter's key was applied cannot be told; "
            + UNORDERED_HINT
        )
    source = ArchiveSource(
        clients.s3,
        s.s3.bucket,
        s.s3.prefix,
        s.source_schema,
        {name: rule.entity != "feedback" for name, rule in mapper.spec.tables.items()},
        since=oldest - timedelta(seconds=2 * lag_s + 300),  # files are named by time, not by commit
        timestamp_column=True,
    )
    stream = s.kinesis.stream_name
    try:
        summary = await clients.kinesis.describe_stream_summary(StreamName=stream)
        retention_h = float(summary["StreamDescriptionSummary"]["RetentionPeriodHours"])
        return await later_changes(
            source,
            clients.kinesis,
            stream,
            mapper,
            keys,
            oldest=oldest,
            archive_lag_s=lag_s,
            retention_h=retention_h,
        )
    except FatalError as e:
        raise FatalError(f"re-drive refused: {e}; {UNORDERED_HINT}") from None
    except Exception as e:
        raise FatalError(
            f"re-drive refused: cannot read the stream {stream}: {e}; {UNORDERED_HINT}"
        ) from None
