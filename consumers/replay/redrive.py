"""Re-drive the dead-letter store after a fix: every letter goes through the same applier;
an applied letter leaves the store, one that fails again goes back with its new reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumers.deadletter import DeadLetter
from consumers.deadletter_stores import SqsDeadLetterStore, s3_key
from consumers.records import ShardRecord


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
