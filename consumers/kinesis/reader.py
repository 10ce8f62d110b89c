"""ShardReader: GetRecords polling of one shard, as a RecordSource.

- Iterators are taken lazily from the start position (TRIM_HORIZON or after the checkpoint)
  and renewed after the last record read when they expire.
- What is retried is gorse_cdc.retry's classification (throttling, 5xx, connection errors,
  timeouts), with capped full-jitter backoff, until it works: the reader never skips data.
  A network error also renews the iterator; throttling is counted per shard.
- ResourceNotFoundException (the stream or shard is gone) and the other FATAL AWS errors
  (credentials, authorization) raise FatalError; other errors propagate as they are.
- The end of a closed shard is a batch with ``shard_ended`` (NextShardIterator is null).
- Successful GetRecords responses are parsed by consumers.kinesis.get_records (one orjson.loads)
  instead of botocore's parser; errors still go through botocore.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from consumers.kinesis.get_records import use_fast_parse
from consumers.metrics import Metrics
from consumers.records import RecordBatch, ShardRecord
from gorse_cdc.errors import FatalError
from gorse_cdc.retry import (
    THROTTLING_CODES,
    ErrorClass,
    FailedAttempt,
    RetryPolicy,
    classify,
    error_code,
    retry_async,
)

log = logging.getLogger(__name__)

ShardIteratorType = Literal[
    "TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP"
]
READ_RETRY = RetryPolicy(base_s=0.2, cap_s=5.0)  # no limit: a reader never skips data
classify_read = functools.partial(classify, fatal={"ResourceNotFoundException"})
T = TypeVar("T")


async def read_retrying(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    classify_error: Callable[[BaseException], ErrorClass],
    on_retry: Callable[[FailedAttempt], None],
    where: str,
) -> T:
    """A Kinesis read under the shared retry policy, as both readers do it: transient failures
    retried (the reader never skips data), an AWS error classified FATAL raised as FatalError
    naming ``where`` (the shard and its stream or consumer)."""
    try:
        return await retry_async(call, policy=policy, classify=classify_error, on_retry=on_retry)
    except (ClientError, BotoCoreError) as e:
        if classify_error(e) is ErrorClass.FATAL:
            raise FatalError(f"{where}: {e}") from e
        raise


@dataclass(frozen=True, slots=True)
class StartPosition:
    """Where a shard iterator starts: Kinesis' ShardIteratorType, with the sequence number
    (AT_/AFTER_SEQUENCE_NUMBER) or the timestamp (AT_TIMESTAMP) it needs."""

    kind: ShardIteratorType = "TRIM_HORIZON"
    sequence_number: str | None = None
    timestamp: datetime | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | None) -> StartPosition:
        if checkpoint in (None, "", "TRIM_HORIZON"):
            return cls("TRIM_HORIZON")
        if checkpoint == "LATEST":
            return cls("LATEST")
        if checkpoint == "AT_TIMESTAMP":
            return cls("AT_TIMESTAMP")
        return cls("AFTER_SEQUENCE_NUMBER", checkpoint)

    def api_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"ShardIteratorType": self.kind}
        if self.sequence_number is not None:
            kw["StartingSequenceNumber"] = self.sequence_number
        if self.timestamp is not None:
            kw["Timestamp"] = self.timestamp
        return kw


class ShardReader:
    def __init__(
        self,
        client: Any,
        stream_name: str,
        shard_id: str,
        start: StartPosition,
        metrics: Metrics | None = None,
        *,
        retry: RetryPolicy = READ_RETRY,
    ) -> None:
        self.client = client
        self.stream_name = stream_name
        self.shard_id = shard_id
        self._start = start
        self._metrics = metrics or Metrics()
        self._retry = retry
        self._iterator: str | None = None
        self._last_read: str | None = None
        self._ended = False
        use_fast_parse(client)

    def _position(self) -> StartPosition:
        if self._last_read is not None:
            return StartPosition("AFTER_SEQUENCE_NUMBER", self._last_read)
        return self._start

    async def _renew_iterator(self) -> None:
        resp = await self.client.get_shard_iterator(
            StreamName=self.stream_name, ShardId=self.shard_id, **self._position().api_kwargs()
        )
        self._iterator = resp["ShardIterator"]

    async def _get_records(self, max_records: int) -> dict[str, Any]:
        """One GetRecords call; an expired iterator is renewed after the last record read and
        the call made again at once (no backoff: nothing failed)."""
        while True:
            if self._iterator is None:
                await self._renew_iterator()
            try:
                resp: dict[str, Any] = await self.client.get_records(
                    ShardIterator=self._iterator, Limit=max_records
                )
                return resp
            except ClientError as e:
                if error_code(e) != "ExpiredIteratorException":
                    raise
                log.info("iterator expired; renewing", extra={"shard": self.shard_id})
                self._iterator = None

    def _on_retry(self, failed: FailedAttempt) -> None:
        extra = {"shard": self.shard_id}
        if not isinstance(failed.error, ClientError):  # a network error: renew the iterator too
            log.warning("GetRecords failed (%s), retry in %.2f s", failed.error, failed.delay_s, extra=extra)
            self._iterator = None
            return
        code = error_code(failed.error)
        if code in THROTTLING_CODES:
            self._metrics.throttles.labels(self.shard_id).inc()
        log.warning("GetRecords %s, retry in %.2f s", code, failed.delay_s, extra=extra)

    async def next_batch(self, max_records: int) -> RecordBatch:
        if self._ended:
            return RecordBatch(self.shard_id, shard_ended=True)
        resp = await read_retrying(
            lambda: self._get_records(max_records),
            policy=self._retry,
            classify_error=classify_read,
            on_retry=self._on_retry,
            where=f"shard {self.shard_id} of {self.stream_name}",
        )
        records = [
            ShardRecord(
                self.shard_id,
                r["SequenceNumber"],
                r["Data"],
                r.get("PartitionKey", ""),
                r.get("ApproximateArrivalTimestamp"),
            )
            for r in resp.get("Records", [])
        ]
        if records:
            self._last_read = records[-1].sequence_number
        self._iterator = resp.get("NextShardIterator")
        behind = resp.get("MillisBehindLatest")
        self._metrics.records_read.labels(self.shard_id).inc(len(records))
        if behind is not None:
            self._metrics.millis_behind.labels(self.shard_id).set(behind)
        children = tuple(c["ShardId"] for c in resp.get("ChildShards") or [])
        self._ended = self._iterator is None
        return RecordBatch(self.shard_id, records, behind, self._ended, children)

    async def close(self) -> None:
        self._iterator = None
