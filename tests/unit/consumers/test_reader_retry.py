"""ShardReader and FanOutReader failure handling, on fake clients (no Kinesis)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from consumers.kinesis.fanout import FanOutReader
from consumers.kinesis.reader import ShardReader, StartPosition
from consumers.metrics import Metrics
from gorse_cdc.errors import FatalError
from gorse_cdc.retry import RetryPolicy
from tests.unit.aws_errors import aws_error

FAST = RetryPolicy(base_s=0.0001, cap_s=0.0001)


class FakeKinesis:
    """GetRecords raises the planned errors in turn, then returns one record."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.iterators: list[dict[str, Any]] = []
        self.reads = 0

    async def get_shard_iterator(self, **kw: Any) -> dict[str, Any]:
        self.iterators.append(kw)
        return {"ShardIterator": f"it-{len(self.iterators)}"}

    async def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        self.reads += 1
        if self.errors:
            raise self.errors.pop(0)
        return {
            "Records": [{"SequenceNumber": "7", "Data": b"x", "PartitionKey": "k"}],
            "NextShardIterator": "next",
            "MillisBehindLatest": 0,
        }


def reader(fake: FakeKinesis, metrics: Metrics | None = None) -> ShardReader:
    return ShardReader(fake, "s", "shardId-0", StartPosition(), metrics, retry=FAST)


async def test_throttling_is_retried_and_counted() -> None:
    fake, metrics = (
        FakeKinesis(aws_error("ProvisionedThroughputExceededException", op="GetRecords")),
        Metrics(),
    )
    batch = await reader(fake, metrics).next_batch(10)
    assert [r.sequence_number for r in batch.records] == ["7"] and fake.reads == 2
    assert metrics.throttles.labels("shardId-0")._value.get() == 1
    assert len(fake.iterators) == 1  # the iterator is still good after throttling


async def test_an_expired_iterator_is_renewed_without_backoff() -> None:
    fake = FakeKinesis(aws_error("ExpiredIteratorException", op="GetRecords"))
    batch = await reader(fake).next_batch(10)
    assert len(batch.records) == 1 and len(fake.iterators) == 2


async def test_a_network_error_renews_the_iterator() -> None:
    fake = FakeKinesis(EndpointConnectionError(endpoint_url="http://kinesis"), OSError("reset"))
    batch = await reader(fake).next_batch(10)
    assert len(batch.records) == 1 and len(fake.iterators) == 3


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "AccessDeniedException"])
async def test_a_missing_stream_or_no_access_is_fatal(code: str) -> None:
    fake = FakeKinesis(aws_error(code, op="GetRecords"))
    with pytest.raises(FatalError, match="shardId-0"):
        await reader(fake).next_batch(10)
    assert fake.reads == 1


async def test_a_permanent_error_propagates_unchanged() -> None:
    fake = FakeKinesis(aws_error("InvalidArgumentException", op="GetRecords"))
    with pytest.raises(ClientError):
        await reader(fake).next_batch(10)
    assert fake.reads == 1


class FakeSubscriptions:
    """SubscribeToShard: each subscription yields the planned items (an exception is raised)."""

    def __init__(self, *subscriptions: Any) -> None:
        self.plan = list(subscriptions)
        self.calls = 0

    async def subscribe_to_shard(self, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        items = self.plan.pop(0)
        if isinstance(items, Exception):
            raise items

        async def stream() -> Any:
            for item in items:
                if isinstance(item, Exception):
                    raise item
                yield item

        return {"EventStream": stream()}


EVENT = {"SubscribeToShardEvent": {"Records": [], "ContinuationSequenceNumber": "9", "MillisBehindLatest": 0}}


async def test_fanout_resubscribes_after_an_ended_subscription_and_in_use() -> None:
    fake = FakeSubscriptions([], aws_error("ResourceInUseException", op="SubscribeToShard"), [EVENT])
    r = FanOutReader(fake, "arn", "shardId-0", StartPosition(), retry=FAST)
    batch = await r.next_batch(10)
    assert fake.calls == 3 and not batch.shard_ended


async def test_fanout_no_access_is_fatal() -> None:
    fake = FakeSubscriptions([aws_error("AccessDeniedException", op="SubscribeToShard")])
    r = FanOutReader(fake, "arn", "shardId-0", StartPosition(), retry=FAST)
    with pytest.raises(FatalError):
        await r.next_batch(10)
    assert fake.calls == 1
