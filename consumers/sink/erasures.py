"""The erasure log: which users were deleted (a GDPR erasure above all), so that nothing from
another stream brings them back.

Engagement events come on their own stream (the gateway's), not in commit order with the
user's delete: a play posted by an app that has not heard of the erasure, or a replay of old
events, would otherwise re-create the user in Gorse (Gorse inserts the user of any feedback).
So every user delete is written here *before* Gorse is asked to delete the user, and the
events path checks it twice (consumers.sink.gorse_sink):

- before it writes: events of logged users are refused (counted and logged, never stored:
  the dead-letter store would keep an erased person's data);
- after it wrote: a user logged meanwhile is deleted again. A delete logged after that
  check was logged after the write too, so its own Gorse delete comes after the write.

Deleted items are logged in the same table (under another hash prefix, ``item_hash``), also
before Gorse deletes them: a rating applied after its movie's delete makes Gorse insert a blank
item, and the sink removes such blanks (GorseSink._drop_orphan_items) only for items logged
here, so the check costs one batched read instead of a Gorse read per item.

Users are stored as sha256 hex of their id (``user_hash``), not their id. Entries are never
removed: a user id that comes back in the source stays refused for events until an operator
removes its entry (ids of the seed are serials, never reused).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

from botocore.exceptions import ClientError

from gorse_cdc.errors import RetriableError

KEY = "user_hash"
_GET_LIMIT = 100  # BatchGetItem keys per call
_WRITE_LIMIT = 25  # BatchWriteItem items per call
_UNPROCESSED_TRIES = 8


def user_hash(user_id: str) -> str:
    return hashlib.sha256(b"gorse-cdc-erased-user\0" + user_id.encode()).hexdigest()


def item_hash(item_id: str) -> str:
    """Deleted items share the table under another prefix: never equal to a user's hash."""
    return hashlib.sha256(b"gorse-cdc-deleted-item\0" + item_id.encode()).hexdigest()


class ErasureLog(Protocol):
    async def record(self, users: Iterable[str]) -> None:
        """Durably log these users as deleted (before Gorse deletes them)."""

    async def erased(self, users: Iterable[str]) -> set[str]:
        """Those of ``users`` that are logged (a strongly consistent read)."""

    async def record_items(self, items: Iterable[str]) -> None:
        """Durably log these items as deleted (before Gorse deletes them)."""

    async def deleted_items(self, items: Iterable[str]) -> set[str]:
        """Those of ``items`` that are logged as deleted (a strongly consistent read)."""


class MemoryErasureLog:
    """In one process (unit tests, the benchmark's no-AWS runs)."""

    def __init__(self) -> None:
        self.hashes: set[str] = set()

    async def record(self, users: Iterable[str]) -> None:
        self.hashes.update(user_hash(u) for u in users)

    async def erased(self, users: Iterable[str]) -> set[str]:
        return {u for u in users if user_hash(u) in self.hashes}

    async def record_items(self, items: Iterable[str]) -> None:
        self.hashes.update(item_hash(i) for i in items)

    async def deleted_items(self, items: Iterable[str]) -> set[str]:
        return {i for i in items if item_hash(i) in self.hashes}


class DynamoErasureLog:
    """The table (partition key ``user_hash``); created when missing (the stack, first runs),
    by CloudFormation in AWS (infra/cloudformation/data-plane.yaml)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.ddb = dynamodb
        self.table = table
        self._ready: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"DynamoErasureLog({self.table!r})"

    async def _ensure(self) -> None:
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.ensure_future(self._ensure_table())
        await asyncio.shield(self._ready)

    async def _ensure_table(self) -> None:
        try:
            await self.ddb.describe_table(TableName=self.table)
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        try:
            await self.ddb.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        await self.ddb.get_waiter("table_exists").wait(TableName=self.table)

    async def record(self, users: Iterable[str]) -> None:
        await self._put({user_hash(u) for u in users}, "erasures")

    async def erased(self, users: Iterable[str]) -> set[str]:
        return await self._logged({user_hash(u): u for u in users}, "users")

    async def record_items(self, items: Iterable[str]) -> None:
        await self._put({item_hash(i) for i in items}, "item deletes")

    async def deleted_items(self, items: Iterable[str]) -> set[str]:
        return await self._logged({item_hash(i): i for i in items}, "items")

    async def _put(self, unique: set[str], what: str) -> None:
        hashes = sorted(unique)
        if not hashes:
            return
        await self._ensure()
        for start in range(0, len(hashes), _WRITE_LIMIT):
            requests = [
                {"PutRequest": {"Item": {KEY: {"S": h}}}} for h in hashes[start : start + _WRITE_LIMIT]
            ]
            for _ in range(_UNPROCESSED_TRIES):
                resp = await self.ddb.batch_write_item(RequestItems={self.table: requests})
                requests = resp.get("UnprocessedItems", {}).get(self.table, [])
                if not requests:
                    break
                await asyncio.sleep(0.05)
            else:
                raise ErasureLogError(f"{len(requests)} {what} not written to {self.table} (throttled)")

    async def _logged(self, by_hash: dict[str, str], what: str) -> set[str]:
        if not by_hash:
            return set()
        await self._ensure()
        found: set[str] = set()
        hashes = sorted(by_hash)
        for start in range(0, len(hashes), _GET_LIMIT):
            keys = [{KEY: {"S": h}} for h in hashes[start : start + _GET_LIMIT]]
            for _ in range(_UNPROCESSED_TRIES):
                resp = await self.ddb.batch_get_item(
                    RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
                )
                found.update(by_hash[i[KEY]["S"]] for i in resp.get("Responses", {}).get(self.table, []))
                keys = resp.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if not keys:
                    break
                await asyncio.sleep(0.05)
            else:
                raise ErasureLogError(f"{len(keys)} {what} not read from {self.table} (throttled)")
        return found


class ErasureLogError(RetriableError):
    """The erasure log stayed throttled: the plan is retried, nothing is applied past it."""
