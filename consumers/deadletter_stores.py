"""Dead-letter stores: S3 (one JSON object per record, keyed by source/shard/sequence, so a
replayed dead letter overwrites itself) or SQS (one message per record). Both return only
once the letters are stored; failures are RetriableError (progress holds)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumers.deadletter import DeadLetter
from gorse_cdc.errors import RetriableError


def s3_key(prefix: str, letter: DeadLetter) -> str:
    source = letter.source or "unknown"
    return f"{prefix.strip('/')}/{source}/{letter.shard_id}/{letter.sequence_number}.json"


class S3DeadLetterStore:
    def __init__(self, client: Any, bucket: str, prefix: str, concurrency: int = 8) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._sem = asyncio.Semaphore(concurrency)

    async def _put(self, letter: DeadLetter) -> None:
        async with self._sem:
            await self.client.put_object(
                Bucket=self.bucket,
                Key=s3_key(self.prefix, letter),
                Body=letter.to_bytes(),
                ContentType="application/json",
            )

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        try:
            await asyncio.gather(*(self._put(x) for x in letters))
        except (ClientError, BotoCoreError, OSError) as e:
            raise RetriableError(f"dead-letter store (s3://{self.bucket}/{self.prefix}): {e}") from e

    async def list(self) -> list[DeadLetter]:
        """Every stored letter (tests, tooling)."""
        import orjson

        out: list[DeadLetter] = []
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix.strip("/") + "/"):
            for obj in page.get("Contents", []):
                resp = await self.client.get_object(Bucket=self.bucket, Key=obj["Key"])
                async with resp["Body"] as body:
                    out.append(DeadLetter.from_json(orjson.loads(await body.read())))
        return out


class SqsDeadLetterStore:
    def __init__(self, client: Any, queue_name: str) -> None:
        self.client = client
        self.queue_name = queue_name
        self._url: str | None = None

    async def _queue_url(self) -> str:
        if self._url is None:
            self._url = str((await self.client.get_queue_url(QueueName=self.queue_name))["QueueUrl"])
        return self._url

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        try:
            url = await self._queue_url()
            for start in range(0, len(letters), 10):
                chunk = letters[start : start + 10]
                resp = await self.client.send_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "MessageBody": x.to_bytes().decode()} for i, x in enumerate(chunk)
                    ],
                )
                if resp.get("Failed"):
                    raise RetriableError(
                        f"SQS refused {len(resp['Failed'])} dead letters: {resp['Failed'][0]}"
                    )
        except (ClientError, BotoCoreError, OSError) as e:
            raise RetriableError(f"dead-letter store (sqs {self.queue_name}): {e}") from e
