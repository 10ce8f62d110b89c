"""Re-drive the dead-letter store after a fix: every letter goes through the same applier;
an applied letter leaves the store, one that fails again goes back with its new reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumers.deadletter import DeadLetter
from consumers.deadletter_stores import s3_key
from consumers.records import ShardRecord


@dataclass
class StoredLetter:
    letter: DeadLetter
    handle: str  # S3 key or SQS receipt handle


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
    def __init__(self, sqs: Any, queue_name: str, visibility_s: int = 300) -> None:
        self.sqs, self.queue_name, self.visibility_s = sqs, queue_name, visibility_s
        self._url: str | None = None

    async def _queue(self) -> str:
        if self._url is None:
            self._url = (await self.sqs.get_queue_url(QueueName=self.queue_name))["QueueUrl"]
        return self._url

    async def fetch(self, limit: int) -> list[StoredLetter]:
        out: list[StoredLetter] = []
        url = await self._queue()
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
            out += [
                StoredLetter(DeadLetter.from_json(orjson.loads(m["Body"])), m["ReceiptHandle"]) for m in msgs
            ]
        return out

    async def done(self, stored: StoredLetter) -> None:
        await self.sqs.delete_message(QueueUrl=await self._queue(), ReceiptHandle=stored.handle)

    async def again(self, stored: StoredLetter, letter: DeadLetter) -> None:
        await self.sqs.send_message(QueueUrl=await self._queue(), MessageBody=letter.to_bytes().decode())
        await self.done(stored)
