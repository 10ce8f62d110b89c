"""Dead-letter stores: S3 (one JSON object per record, keyed by source/shard/sequence, so a
replayed dead letter overwrites itself) or SQS (one message per record). Both return only
once the letters are stored; failures are RetriableError (progress holds)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
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


SQS_BATCH_BYTES = 200_000  # SQS caps a message, and a whole batch, at 256 KiB


class SqsDeadLetterStore:
    """One message per letter, batched by size. A letter too large for SQS (DMS records reach
    1 MiB) is stored in S3 (``overflow``: bucket + prefix) and the message carries a pointer."""

    def __init__(self, client: Any, queue_name: str, overflow: S3DeadLetterStore | None = None) -> None:
        self.client = client
        self.queue_name = queue_name
        self.overflow = overflow
        self._url: str | None = None

    async def _queue_url(self) -> str:
        if self._url is None:
            self._url = str((await self.client.get_queue_url(QueueName=self.queue_name))["QueueUrl"])
        return self._url

    async def _body(self, letter: DeadLetter) -> str:
        body = letter.to_bytes()
        if len(body) <= SQS_BATCH_BYTES:
            return body.decode()
        if self.overflow is None:
            raise RetriableError(
                f"dead letter of {len(body)} bytes is too large for SQS and no S3 overflow is set"
            )
        await self.overflow.put([letter])
        pointer = {k: v for k, v in letter.to_json().items() if k != "raw"}
        pointer["s3_pointer"] = f"s3://{self.overflow.bucket}/{s3_key(self.overflow.prefix, letter)}"
        return orjson.dumps(pointer).decode()

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        try:
            url = await self._queue_url()
            batch: list[str] = []
            size = 0  # in bytes, as SQS counts: a character may take up to 4
            for letter in letters:
                body = await self._body(letter)
                body_bytes = len(body.encode())
                if batch and (len(batch) == 10 or size + body_bytes > SQS_BATCH_BYTES):
                    await self._send(url, batch)
                    batch, size = [], 0
                batch.append(body)
                size += body_bytes
            if batch:
                await self._send(url, batch)
        except (ClientError, BotoCoreError, OSError) as e:
            raise RetriableError(f"dead-letter store (sqs {self.queue_name}): {e}") from e

    async def _send(self, url: str, bodies: list[str]) -> None:
        resp = await self.client.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
        )
        if resp.get("Failed"):
            raise RetriableError(f"SQS refused {len(resp['Failed'])} dead letters: {resp['Failed'][0]}")
