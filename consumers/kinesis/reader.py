"""ShardReader: GetRecords polling of one shard, as a RecordSource.

- Iterators are taken lazily from the start position (TRIM_HORIZON or after the checkpoint)
  and renewed after the last record read when they expire.
- Throttling (ProvisionedThroughputExceededException, LimitExceededException) and transient
  network errors back off (capped, jittered) and try again: the reader never skips data.
- The end of a closed shard is a batch with ``shard_ended`` (NextShardIterator is null).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from consumers.backoff import Backoff
from consumers.metrics import Metrics
from consumers.records import RecordBatch, ShardRecord
from gorse_cdc.errors import FatalError

log = logging.getLogger(__name__)

THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException"})
TRANSIENT = frozenset({"InternalFailure", "ServiceUnavailable", "KMSThrottlingException"})
ShardIteratorType = Literal[
    "TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP"
]


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


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class ShardReader:
    def __init__(
        self,
        client: Any,
        stream_name: str,
        shard_id: str,
        start: StartPosition,
        metrics: Metrics | None = None,
    ) -> None:
        self.client = client
        self.stream_name = stream_name
        self.shard_id = shard_id
        self._start = start
        self._metrics = metrics or Metrics()
        self._iterator: str | None = None
        self._last_read: str | None = None
        self._ended = False

    def _position(self) -> StartPosition:
        if self._last_read is not None:
            return StartPosition("AFTER_SEQUENCE_NUMBER", self._last_read)
        return self._start

    async def _renew_iterator(self) -> None:
        resp = await self.client.get_shard_iterator(
            StreamName=self.stream_name, ShardId=self.shard_id, **self._position().api_kwargs()
        )
        self._iterator = resp["ShardIterator"]

    async def next_batch(self, max_records: int) -> RecordBatch:
        if self._ended:
            return RecordBatch(self.shard_id, shard_ended=True)
        backoff = Backoff(base_s=0.2, cap_s=5.0)
        while True:
            try:
                if self._iterator is None:
                    await self._renew_iterator()
                resp = await self.client.get_records(ShardIterator=self._iterator, Limit=max_records)
                break
            except ClientError as e:
                code = _code(e)
                if code == "ExpiredIteratorException":
                    log.info("iterator expired; renewing", extra={"shard": self.shard_id})
                    self._iterator = None
                    continue
                if code in THROTTLED:
                    self._metrics.throttles.labels(self.shard_id).inc()
                elif code not in TRANSIENT:
                    if code == "ResourceNotFoundException":
                        raise FatalError(f"shard {self.shard_id} of {self.stream_name}: {e}") from e
                    raise
                delay = backoff.next_delay()
                log.warning("GetRecords %s, retry in %.2f s", code, delay, extra={"shard": self.shard_id})
                await asyncio.sleep(delay)
            except (BotoCoreError, OSError) as e:
                delay = backoff.next_delay()
                log.warning(
                    "GetRecords failed (%s), retry in %.2f s", e, delay, extra={"shard": self.shard_id}
                )
                self._iterator = None
                await asyncio.sleep(delay)
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
