"""The replay's wait for a borrowed lease polls one lease (a GetItem), not the whole table: a
Scan of every lease every poll (0.25 s) per shard was the old cost (issue 20, item 10)."""

from __future__ import annotations

import asyncio
from typing import Any

from consumers.leases.lease import Lease
from consumers.leases.table import LeaseTable
from consumers.replay.borrow import LeaseBorrow


class CountingDynamo:
    """A DynamoDB client with one table of leases; counts the calls by operation."""

    def __init__(self, leases: list[Lease]) -> None:
        self.items = {le.lease_key: le.to_item() for le in leases}
        self.calls: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    async def scan(self, **_: Any) -> dict[str, Any]:
        self._count("scan")
        return {"Items": list(self.items.values())}

    async def get_item(self, *, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        self._count("get_item")
        item = self.items.get(Key["leaseKey"]["S"])
        return {"Item": item} if item is not None else {}

    async def update_item(self, **_: Any) -> dict[str, Any]:
        self._count("update_item")  # the handoff request; the live owner never answers
        return {}


async def test_waiting_for_a_lease_reads_only_that_lease() -> None:
    leases = [Lease(f"shard-{i:04d}", lease_owner="live", lease_counter=1) for i in range(200)]
    ddb = CountingDynamo(leases)
    borrow = LeaseBorrow(LeaseTable(ddb, "leases"), "replay", failover_s=60.0, poll_s=0.001)
    waiting = asyncio.create_task(borrow.acquire("shard-0007"))
    await asyncio.sleep(0.1)
    waiting.cancel()
    assert ddb.calls.get("get_item", 0) >= 5, ddb.calls
    assert ddb.calls.get("scan", 0) == 0, ddb.calls


async def test_a_shard_without_a_lease_is_none() -> None:
    borrow = LeaseBorrow(LeaseTable(CountingDynamo([]), "leases"), "replay", failover_s=60.0)
    assert await borrow.acquire("shard-0001") is None
