"""The replay tool's own checkpoint namespace: a lease table of its own (never the live
consumer's), one row per (job, shard) keyed "<job>/<shard>". A restart of the same job resumes
after the last checkpoint; a finished shard is not read again."""

from __future__ import annotations

from typing import Any

from consumers.leases.lease import SHARD_END, TRIM_HORIZON, Lease
from consumers.leases.table import LeaseTable
from consumers.protocols import EndReason

DONE = "REPLAY_DONE"  # the stop point was reached on an open shard


class ReplayCheckpoints:
    """The CheckpointStore (consumers.protocols) of one replay job. A job runs one process per
    shard set, so ownership is the job name: the conditions of the lease table still hold."""

    def __init__(self, client: Any, table: str, job: str) -> None:
        if "/" in job or not job:
            raise ValueError("the replay job name must be non-empty and contain no '/'")
        self.table = LeaseTable(client, table)
        self.job = job

    def key(self, shard_id: str) -> str:
        return f"{self.job}/{shard_id}"

    async def open(self) -> None:
        await self.table.ensure_table()

    async def position(self, shard_id: str) -> str | None:
        """None: never started. Else a sequence number / archive position, DONE or SHARD_END."""
        for lease in await self._mine():
            if lease.lease_key == self.key(shard_id):
                return None if lease.checkpoint == TRIM_HORIZON else lease.checkpoint
        return None

    async def _mine(self) -> list[Lease]:
        prefix = f"{self.job}/"
        return [x for x in await self.table.list_leases() if x.lease_key.startswith(prefix)]

    async def positions(self) -> dict[str, str]:
        prefix = len(self.job) + 1
        return {x.lease_key[prefix:]: x.checkpoint for x in await self._mine()}

    async def checkpoint(self, shard_id: str, position: str) -> None:
        await self.table.create_if_absent(Lease(self.key(shard_id), self.job))
        await self.table.checkpoint(self.key(shard_id), self.job, position)

    async def shard_ended(
        self, shard_id: str, children: tuple[str, ...] = (), reason: EndReason = EndReason.CLOSED
    ) -> None:
        """CLOSED: SHARD_END (the shard is read to its end); STOP_POINT: DONE. Either way the
        job will not read the shard again (is_finished)."""
        await self.checkpoint(shard_id, SHARD_END if reason is EndReason.CLOSED else DONE)

    async def finished(self, shard_id: str) -> None:
        await self.checkpoint(shard_id, DONE)

    async def reset(self) -> int:
        """Forget this job's positions (start over)."""
        mine = await self._mine()
        for lease in mine:
            await self.table.client.delete_item(
                TableName=self.table.name, Key={"leaseKey": {"S": lease.lease_key}}
            )
        return len(mine)


def is_finished(position: str | None) -> bool:
    return position in (SHARD_END, DONE)
