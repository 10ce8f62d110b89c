"""LeaseTable: the DynamoDB lease table (KCL schema, hash key leaseKey), created if absent
(PAY_PER_REQUEST). Every change of ownership or position is a conditional write:

- renew: leaseCounter + 1, if leaseCounter and leaseOwner are still what this worker saw;
- take:  new owner and leaseCounter + 1, if leaseCounter is still what this worker saw;
- checkpoint / release: if leaseOwner is still this worker;
- request_handoff: handoffTo = the requester, if the owner is still who it saw and no other
  move is pending; hand_off: the owner gives the lease to handoffTo (leaseCounter + 1), if it
  still owns it. A lease moves between live workers only this way, after the old owner has
  flushed and checkpointed its batch, so its writes never land after the new owner's.

A failed condition means another worker owns the lease now: LeaseLostError (or None for
take). The table name is the checkpoint namespace: the replay tool passes its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import ClientError

from consumers.leases.lease import SHARD_END, Lease, LeaseLostError
from gorse_cdc.retry import error_code


def _conditional_failed(e: ClientError) -> bool:
    return error_code(e) == "ConditionalCheckFailedException"


class LeaseTable:
    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.name = table_name

    async def ensure_table(self, timeout_s: float = 60.0) -> None:
        try:
            desc = await self.client.describe_table(TableName=self.name)
        except ClientError as e:
            if error_code(e) != "ResourceNotFoundException":
                raise
            try:
                await self.client.create_table(
                    TableName=self.name,
                    KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            except ClientError as e2:
                if error_code(e2) != "ResourceInUseException":
                    raise
            desc = await self.client.describe_table(TableName=self.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while desc["Table"]["TableStatus"] != "ACTIVE":
            if loop.time() > deadline:
                raise TimeoutError(f"lease table {self.name} not ACTIVE after {timeout_s} s")
            await asyncio.sleep(0.5)
            desc = await self.client.describe_table(TableName=self.name)

    async def list_leases(self) -> list[Lease]:
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {"TableName": self.name, "ConsistentRead": True}
        while True:
            resp = await self.client.scan(**kwargs)
            leases.extend(Lease.from_item(i) for i in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last:
                return leases
            kwargs["ExclusiveStartKey"] = last

    async def get(self, lease_key: str) -> Lease | None:
        """One lease, read consistently (a GetItem: cheap to poll, unlike list_leases)."""
        resp = await self.client.get_item(
            TableName=self.name, Key={"leaseKey": {"S": lease_key}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return Lease.from_item(item) if item else None

    async def create_if_absent(self, lease: Lease) -> bool:
        try:
            await self.client.put_item(
                TableName=self.name,
                Item=lease.to_item(),
                ConditionExpression="attribute_not_exists(leaseKey)",
            )
            return True
        except ClientError as e:
            if _conditional_failed(e):
                return False
            raise

    async def _update(self, key: str, **kwargs: Any) -> Lease:
        resp = await self.client.update_item(
            TableName=self.name, Key={"leaseKey": {"S": key}}, ReturnValues="ALL_NEW", **kwargs
        )
        return Lease.from_item(resp["Attributes"])

    async def renew(self, lease: Lease) -> Lease:
        try:
            return await self._update(
                lease.lease_key,
                UpdateExpression="SET leaseCounter = :new",
                ConditionExpression="leaseCounter = :old AND leaseOwner = :me",
                ExpressionAttributeValues={
                    ":new": {"N": str(lease.lease_counter + 1)},
                    ":old": {"N": str(lease.lease_counter)},
                    ":me": {"S": lease.lease_owner or ""},
                },
            )
        except ClientError as e:
            if _conditional_failed(e):
                raise LeaseLostError(lease.lease_key) from None
            raise

    async def take(self, lease: Lease, owner: str, *, pinned: bool = False) -> Lease | None:
        """Take a free or expired lease (``pinned``: for a replay, see Lease.pinned)."""
        switches = 0 if lease.lease_owner == owner else 1
        try:
            return await self._update(
                lease.lease_key,
                UpdateExpression=(
                    "SET leaseOwner = :me, leaseCounter = :new, pinned = :pin, "
                    "ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :sw REMOVE handoffTo"
                ),
                ConditionExpression="leaseCounter = :old",
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":new": {"N": str(lease.lease_counter + 1)},
                    ":old": {"N": str(lease.lease_counter)},
                    ":sw": {"N": str(switches)},
                    ":pin": {"BOOL": pinned},
                },
            )
        except ClientError as e:
            if _conditional_failed(e):
                return None
            raise

    async def request_handoff(self, lease: Lease, requester: str) -> bool:
        """Ask the owner to flush, checkpoint and hand the lease over; False if the lease
        changed hands meanwhile or another move is pending."""
        try:
            await self.client.update_item(
                TableName=self.name,
                Key={"leaseKey": {"S": lease.lease_key}},
                UpdateExpression="SET handoffTo = :me",
                ConditionExpression="leaseOwner = :owner AND attribute_not_exists(handoffTo)",
                ExpressionAttributeValues={":me": {"S": requester}, ":owner": {"S": lease.lease_owner or ""}},
            )
            return True
        except ClientError as e:
            if _conditional_failed(e):
                return False
            raise

    async def hand_off(self, shard_id: str, owner: str, to: str) -> bool:
        """The owner, its last batch checkpointed, makes ``to`` the owner."""
        try:
            await self.client.update_item(
                TableName=self.name,
                Key={"leaseKey": {"S": shard_id}},
                UpdateExpression=(
                    "SET leaseOwner = :to, leaseCounter = leaseCounter + :one, "
                    "ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :one REMOVE handoffTo"
                ),
                ConditionExpression="leaseOwner = :me AND handoffTo = :to",
                ExpressionAttributeValues={":one": {"N": "1"}, ":me": {"S": owner}, ":to": {"S": to}},
            )
            return True
        except ClientError as e:
            if _conditional_failed(e):
                return False
            raise

    async def checkpoint(self, shard_id: str, owner: str, position: str) -> None:
        try:
            await self.client.update_item(
                TableName=self.name,
                Key={"leaseKey": {"S": shard_id}},
                UpdateExpression=(
                    "SET #cp = :cp, checkpointSubSequenceNumber = :zero, ownerSwitchesSinceCheckpoint = :zero"
                ),
                ConditionExpression="leaseOwner = :me",
                ExpressionAttributeNames={"#cp": "checkpoint"},
                ExpressionAttributeValues={
                    ":cp": {"S": position},
                    ":zero": {"N": "0"},
                    ":me": {"S": owner},
                },
            )
        except ClientError as e:
            if _conditional_failed(e):
                raise LeaseLostError(shard_id) from None
            raise

    async def mark_ended(self, shard_id: str, owner: str, children: list[str]) -> None:
        """Checkpoint SHARD_END and record the children, then give the lease up."""
        await self.checkpoint(shard_id, owner, SHARD_END)
        if children:
            await self.client.update_item(
                TableName=self.name,
                Key={"leaseKey": {"S": shard_id}},
                UpdateExpression="ADD childShardIds :c",
                ExpressionAttributeValues={":c": {"SS": children}},
            )

    async def release(self, shard_id: str, owner: str) -> bool:
        try:
            await self.client.update_item(
                TableName=self.name,
                Key={"leaseKey": {"S": shard_id}},
                UpdateExpression="REMOVE leaseOwner, pinned SET leaseCounter = leaseCounter + :one",
                ConditionExpression="leaseOwner = :me",
                ExpressionAttributeValues={":one": {"N": "1"}, ":me": {"S": owner}},
            )
            return True
        except ClientError as e:
            if _conditional_failed(e):
                return False
            raise
