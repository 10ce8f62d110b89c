"""Kinesis' partial refusals of refresh records (FailedRecordCount, an ErrorCode per refused
entry) are put again entry by entry, not the whole plan (issue 20, items 5 and 12). A unit
test with a fake Kinesis client: kinesalite never refuses entries (no throughput limits).
FakeKinesis also serves tests/unit/consumers/test_fan_out.py as the stream."""

from __future__ import annotations

from typing import Any

import pytest

from gorse_cdc.mapping.ops import FanOutLikers, RefreshLiked
from gorse_cdc.refresh_records import RefreshNotPublishedError, RefreshPublisher, decode_refresh


class FakeKinesis:
    """PutRecords that refuses the entries ``refuse`` picks (by call and position), as
    Kinesis does when a shard's write limit is passed: FailedRecordCount and an ErrorCode on
    each refused entry; the others are stored."""

    def __init__(self, refuse: Any = lambda call, i: False, log: list[tuple[str, str]] | None = None) -> None:
        self.refuse = refuse
        self.calls: list[int] = []  # entries per call
        self.stored: list[dict[str, Any]] = []
        self.log = log if log is not None else []

    async def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        call = len(self.calls)
        self.calls.append(len(Records))
        out, failed = [], 0
        for i, r in enumerate(Records):
            if self.refuse(call, i):
                failed += 1
                out.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
                )
            else:
                self.stored.append(r)
                self.log.append(("put_records", r["PartitionKey"]))
                out.append({"SequenceNumber": str(len(self.stored)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": failed, "Records": out}

    def taken(self) -> list[RefreshLiked | FanOutLikers]:
        ops = [decode_refresh(r["Data"]) for r in self.stored]
        self.stored = []
        return [op for op in ops if op is not None]


async def no_sleep(_: float) -> None:
    return None


async def test_only_the_refused_entries_are_put_again() -> None:
    kinesis = FakeKinesis(refuse=lambda call, i: call == 0 and i % 3 == 0)  # a third, once
    publisher = RefreshPublisher(kinesis, "s", sleep=no_sleep)
    await publisher.publish({f"u{i:03d}": {"m1": ("Drama",)} for i in range(30)})
    assert kinesis.calls == [30, 10]
    users = sorted(op.user_id for op in kinesis.taken() if isinstance(op, RefreshLiked))
    assert users == [f"u{i:03d}" for i in range(30)]  # each exactly once
    assert (publisher.published, publisher.refused) == (30, 10)


async def test_entries_refused_every_time_fail_the_plan_after_the_attempts() -> None:
    kinesis = FakeKinesis(refuse=lambda call, i: i == 0)
    publisher = RefreshPublisher(kinesis, "s", attempts=4, sleep=no_sleep)
    with pytest.raises(RefreshNotPublishedError, match="ProvisionedThroughputExceeded"):
        await publisher.publish({"u1": {"m1": None}, "u2": {"m1": None}})
    assert kinesis.calls == [2, 1, 1, 1]
