"""Enhanced fan-out (SubscribeToShard) as a RecordSource. UNTESTED LOCALLY: kinesalite and
moto do not implement SubscribeToShard, and kinesis-local's event stream is refused by
aiobotocore ("First event was not of type initial-response"). Written against the AWS API
reference; enable with ``gorse-cdc consume --enhanced-fan-out`` only against real Kinesis.

- The stream consumer is registered once (RegisterStreamConsumer) and waited ACTIVE.
- A subscription lasts at most 5 minutes; the reader resubscribes after the
  ContinuationSequenceNumber of the last event, so nothing is skipped or read twice.
- A closed shard ends with an event whose ContinuationSequenceNumber is null (ChildShards set).
- Failures follow gorse_cdc.retry's classification, plus ResourceInUseException (a
  resubscription within 5 s of the last one) as retriable: the reader resubscribes after
  capped full-jitter backoff until it works. A missing consumer or shard
  (ResourceNotFoundException) and the other FATAL AWS errors raise FatalError.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from botocore.exceptions import ClientError

from consumers.kinesis.reader import StartPosition, read_retrying
from consumers.metrics import Metrics
from consumers.records import RecordBatch, ShardRecord
from gorse_cdc.retry import FailedAttempt, RetryPolicy, classify, error_code

log = logging.getLogger(__name__)

SUBSCRIBE_RETRY = RetryPolicy(base_s=0.2, cap_s=5.0)  # no limit: a reader never skips data
classify_subscribe = functools.partial(
    classify, retriable={"ResourceInUseException"}, fatal={"ResourceNotFoundException"}
)


async def ensure_stream_consumer(client: Any, stream_name: str, consumer_name: str) -> str:
    """The ARN of an ACTIVE registered stream consumer, registering it if needed."""
    summary = await client.describe_stream_summary(StreamName=stream_name)
    stream_arn = summary["StreamDescriptionSummary"]["StreamARN"]
    try:
        desc = await client.describe_stream_consumer(StreamARN=stream_arn, ConsumerName=consumer_name)
    except ClientError as e:
        if error_code(e) != "ResourceNotFoundException":
            raise
        await client.register_stream_consumer(StreamARN=stream_arn, ConsumerName=consumer_name)
        desc = await client.describe_stream_consumer(StreamARN=stream_arn, ConsumerName=consumer_name)
    for _ in range(120):
        if desc["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE":
            return str(desc["ConsumerDescription"]["ConsumerARN"])
        await asyncio.sleep(1)
        desc = await client.describe_stream_consumer(StreamARN=stream_arn, ConsumerName=consumer_name)
    raise TimeoutError(f"stream consumer {consumer_name} not ACTIVE after 120 s")


class FanOutReader:
    def __init__(
        self,
        client: Any,
        consumer_arn: str,
        shard_id: str,
        start: StartPosition,
        metrics: Metrics | None = None,
        *,
        retry: RetryPolicy = SUBSCRIBE_RETRY,
    ) -> None:
        self.client = client
        self.consumer_arn = consumer_arn
        self.shard_id = shard_id
        self._start = start
        self._metrics = metrics or Metrics()
        self._retry = retry
        self._continuation: str | None = None
        self._events: Any = None
        self._ended = False

    def _position(self) -> dict[str, Any]:
        if self._continuation is not None:
            pos = StartPosition("AFTER_SEQUENCE_NUMBER", self._continuation)
        else:
            pos = self._start
        kw = pos.api_kwargs()
        out: dict[str, Any] = {"Type": kw.pop("ShardIteratorType")}
        if "StartingSequenceNumber" in kw:
            out["SequenceNumber"] = kw["StartingSequenceNumber"]
        if "Timestamp" in kw:
            out["Timestamp"] = kw["Timestamp"]
        return out

    async def _subscribe(self) -> None:
        resp = await self.client.subscribe_to_shard(
            ConsumerARN=self.consumer_arn, ShardId=self.shard_id, StartingPosition=self._position()
        )
        self._events = resp["EventStream"].__aiter__()

    async def _next_event(self) -> dict[str, Any]:
        """The next event; a subscription that ended (after 5 minutes) is renewed at once."""
        while True:
            if self._events is None:
                await self._subscribe()
            try:
                event: dict[str, Any] = await self._events.__anext__()
                return event
            except StopAsyncIteration:
                self._events = None

    def _on_retry(self, failed: FailedAttempt) -> None:
        self._events = None
        log.warning("SubscribeToShard failed (%s), retry in %.2f s", failed.error, failed.delay_s)

    async def next_batch(self, max_records: int) -> RecordBatch:
        """One SubscribeToShardEvent (``max_records`` does not apply: Kinesis pushes)."""
        if self._ended:
            return RecordBatch(self.shard_id, shard_ended=True)
        event = await read_retrying(
            self._next_event,
            policy=self._retry,
            classify_error=classify_subscribe,
            on_retry=self._on_retry,
            where=f"shard {self.shard_id} of {self.consumer_arn}",
        )
        ev = event.get("SubscribeToShardEvent", {})
        records = [
            ShardRecord(
                self.shard_id,
                r["SequenceNumber"],
                r["Data"],
                r.get("PartitionKey", ""),
                r.get("ApproximateArrivalTimestamp"),
            )
            for r in ev.get("Records", [])
        ]
        self._continuation = ev.get("ContinuationSequenceNumber") or self._continuation
        behind = ev.get("MillisBehindLatest")
        if behind is not None:
            self._metrics.millis_behind.labels(self.shard_id).set(behind)
        self._metrics.records_read.labels(self.shard_id).inc(len(records))
        self._ended = ev.get("ContinuationSequenceNumber") is None and "ContinuationSequenceNumber" in ev
        children = tuple(c["ShardId"] for c in ev.get("ChildShards") or [])
        return RecordBatch(self.shard_id, records, behind, self._ended, children)

    async def close(self) -> None:
        self._events = None
