"""A replay borrows the live consumer's leases, so that no two writers ever write one shard's
keys at once and the replay never sets a key back.

For each shard it replays, the replay asks the live owner for the lease (the same handoff a
live worker uses: the owner flushes and checkpoints its batch, then hands over), takes it
*pinned* (no live worker asks for it or steals it; it still expires if the replay dies), reads
the shard only up to the live checkpoint, writes the coalesced final state of every key in that
range (what the live consumer had already written, under today's mapping), and releases the
lease at the same checkpoint: the live consumer resumes exactly where it stopped. While it holds
a lease it renews it every failover/3 and stops writing past the same write deadline as a live
worker (consumers.leases.coordinator).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from botocore.exceptions import ClientError

from consumers.leases.coordinator import FORCE_AFTER, WRITE_DEADLINE
from consumers.leases.lease import TRIM_HORIZON, Lease, LeaseLostError
from consumers.leases.table import LeaseTable
from gorse_cdc.retry import error_code

log = logging.getLogger(__name__)
T = TypeVar("T")


class BorrowedLeaseLostError(LeaseLostError):
    """The replay lost a lease it borrowed: the live consumer writes the shard's keys again,
    so the replay must write nothing more of them (it stops; exit code 2)."""

    def __init__(self, shard_id: str, what: str) -> None:
        super().__init__(shard_id)
        self.args = (
            f"the replay lost the lease of shard {shard_id} it borrowed (stopped or cut off for longer "
            f"than the failover time?): the live consumer writes its keys again, so nothing more of "
            f"{what} was written. Run the same command again to replay it",
        )


class LeaseBorrow:
    def __init__(
        self,
        table: LeaseTable,
        owner: str,
        failover_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.25,
        on_wait: Callable[[str, str], None] = lambda shard, owner: None,
    ) -> None:
        self.table = table
        self.owner = owner
        self.failover_s = failover_s
        self.clock = clock
        self.poll_s = poll_s
        self.on_wait = on_wait
        self.held: dict[str, Lease] = {}
        self.renewed_at: dict[str, float] = {}
        self.lost: set[str] = set()

    async def _lease(self, shard_id: str) -> Lease | None:
        return await self.table.get(shard_id)  # polled every poll_s: one GetItem, not a Scan

    async def acquire(self, shard_id: str) -> Lease | None:
        """The shard's lease, held by the replay (pinned), once its live owner handed it over
        (or it was free, or expired). None when the live consumer has no lease for the shard
        (it never read it); an ended lease is returned as it is (nobody writes a closed shard
        read to its end any more)."""
        asked_at: float | None = None
        seen: tuple[int, float] | None = None
        while True:
            le = await self._lease(shard_id)
            if le is None or le.ended:
                return le
            now = self.clock()
            if seen is None or seen[0] != le.lease_counter:
                seen = (le.lease_counter, now)
            expired = le.lease_owner is not None and now - seen[1] >= self.failover_s
            forced = asked_at is not None and now - asked_at > self.failover_s * FORCE_AFTER
            if le.lease_owner in (None, self.owner) or expired or forced:
                taken = await self.table.take(le, self.owner, pinned=True)
                if taken is not None:
                    self.held[shard_id] = taken
                    self.renewed_at[shard_id] = self.clock()
                    log.info("lease borrowed from the live consumer", extra={"shard": shard_id})
                    return taken
            elif le.handoff_to is None and await self.table.request_handoff(le, self.owner):
                asked_at = now
            elif le.handoff_to == self.owner and asked_at is None:
                asked_at = now  # asked by an earlier run of this replay
            self.on_wait(shard_id, le.lease_owner or "")
            await asyncio.sleep(self.poll_s)

    def may_write(self, shard_id: str) -> bool:
        at = self.renewed_at.get(shard_id)
        return (
            shard_id not in self.lost
            and at is not None
            and self.clock() - at <= self.failover_s * WRITE_DEADLINE
        )

    async def renew_all(self) -> None:
        for key, lease in list(self.held.items()):
            try:
                self.held[key] = await self.table.renew(lease)
                self.renewed_at[key] = self.clock()
            except LeaseLostError:
                log.error("the replay lost the lease it borrowed", extra={"shard": key})
                self.held.pop(key, None)
                self.lost.add(key)

    async def keep_renewed(self) -> None:
        """Run for as long as the replay holds leases (a background task)."""
        while True:
            await asyncio.sleep(self.failover_s / 3)
            with contextlib.suppress(Exception):  # a failed round is retried; the deadline guards
                await self.renew_all()

    async def release(self, shard_id: str) -> None:
        """Hand the lease back to the live consumer at the checkpoint it had."""
        self.held.pop(shard_id, None)
        self.renewed_at.pop(shard_id, None)
        if await self.table.release(shard_id, self.owner):
            log.info("lease returned to the live consumer", extra={"shard": shard_id})

    async def guarded(self, shard_ids: str | Iterable[str], work: Awaitable[T]) -> T:
        """Run ``work`` (a write) while every one of the leases may be written; never start it
        when one may not, cancel it the moment one may not, and raise LeaseLostError."""
        shards = [shard_ids] if isinstance(shard_ids, str) else sorted(shard_ids)

        def lost() -> str | None:
            return next((s for s in shards if not self.may_write(s)), None)

        gone = lost()
        if gone is not None:
            if inspect.iscoroutine(work):
                work.close()  # never started
            raise LeaseLostError(gone)
        task = asyncio.ensure_future(work)
        try:
            while not task.done():
                gone = lost()
                if gone is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    raise LeaseLostError(gone)
                await asyncio.wait({task}, timeout=0.1)
            return task.result()
        finally:
            if not task.done():
                task.cancel()


def live_stop(lease: Lease | None) -> str | None:
    """The last sequence number the live consumer applied on the shard: the replay's stop.
    None: read everything (no live lease, or the shard was read to its end); "": nothing."""
    if lease is None or lease.ended:
        return None
    if lease.checkpoint in (TRIM_HORIZON, "LATEST", "AT_TIMESTAMP"):
        return ""
    return lease.checkpoint


async def live_owners(table: LeaseTable, failover_s: float) -> list[str]:
    """The workers renewing leases of ``table`` now (a counter that moves within failover/3,
    the renewal interval); [] when the table is absent or nobody renews."""
    try:
        first = {le.lease_key: le.lease_counter for le in await table.list_leases() if le.lease_owner}
    except ClientError as e:
        if error_code(e) == "ResourceNotFoundException":
            return []
        raise
    if not first:
        return []
    await asyncio.sleep(failover_s / 3 + 0.5)
    leases = await table.list_leases()
    return sorted(
        {
            le.lease_owner or ""
            for le in leases
            if first.get(le.lease_key, le.lease_counter) != le.lease_counter
        }
    )
