"""The DynamoDB table of API keys (hashes only). Partition key ``key_id``.

Revocation sets ``revoked_at`` (the row stays, for audits); a revoked key never authenticates
again. Writes are conditional so that creating never overwrites another key's row.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from gateway.keys import KeyRecord, Role, hash_key, new_key
from gorse_cdc.errors import FatalError


class KeyNotFoundError(FatalError):
    pass


def _item(rec: KeyRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key_id": {"S": rec.key_id},
        "key_hash": {"S": rec.key_hash},
        "role": {"S": rec.role.value},
        "rate_per_s": {"N": repr(rec.rate_per_s)},
        "burst": {"N": str(rec.burst)},
        "name": {"S": rec.name},
        "created_at": {"S": rec.created_at.isoformat()},
    }
    if rec.revoked_at is not None:
        item["revoked_at"] = {"S": rec.revoked_at.isoformat()}
    return item


def _record(item: dict[str, Any]) -> KeyRecord:
    revoked = item.get("revoked_at", {}).get("S")
    return KeyRecord(
        item["key_id"]["S"],
        item["key_hash"]["S"],
        Role(item["role"]["S"]),
        float(item["rate_per_s"]["N"]),
        int(item["burst"]["N"]),
        item.get("name", {}).get("S", ""),
        datetime.fromisoformat(item["created_at"]["S"]),
        datetime.fromisoformat(revoked) if revoked else None,
    )


class KeyStore:
    def __init__(self, dynamodb: Any, table: str, pepper: bytes) -> None:
        self.ddb = dynamodb
        self.table = table
        self._pepper = pepper

    def __repr__(self) -> str:  # never the pepper
        return f"KeyStore({self.table!r})"

    async def ensure_table(self) -> None:
        try:
            await self.ddb.describe_table(TableName=self.table)
            return
        except self.ddb.exceptions.ResourceNotFoundException:
            pass
        with contextlib.suppress(self.ddb.exceptions.ResourceInUseException):
            await self.ddb.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "key_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "key_id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        await self.ddb.get_waiter("table_exists").wait(TableName=self.table)

    async def create(self, role: Role, rate_per_s: float, burst: int, name: str) -> tuple[KeyRecord, str]:
        """A new key: its record and the key itself (shown once, never stored)."""
        key_id, key = new_key()
        rec = KeyRecord(key_id, hash_key(self._pepper, key), role, rate_per_s, burst, name, datetime.now(UTC))
        await self.ddb.put_item(
            TableName=self.table, Item=_item(rec), ConditionExpression="attribute_not_exists(key_id)"
        )
        return rec, key

    async def get(self, key_id: str) -> KeyRecord | None:
        resp = await self.ddb.get_item(
            TableName=self.table, Key={"key_id": {"S": key_id}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return _record(item) if item else None

    async def list(self) -> list[KeyRecord]:
        out: list[KeyRecord] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            resp = await self.ddb.scan(**kwargs)
            out += [_record(i) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return sorted(out, key=lambda r: r.created_at)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    async def revoke(self, key_id: str) -> KeyRecord:
        try:
            resp = await self.ddb.update_item(
                TableName=self.table,
                Key={"key_id": {"S": key_id}},
                UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
                ConditionExpression="attribute_exists(key_id)",
                ExpressionAttributeValues={":now": {"S": datetime.now(UTC).isoformat()}},
                ReturnValues="ALL_NEW",
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            raise KeyNotFoundError(f"no API key with id {key_id!r}") from None
        return _record(resp["Attributes"])
