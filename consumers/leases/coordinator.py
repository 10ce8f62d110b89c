"""LeaseCoordinator: this worker's view of the lease table, and the CheckpointStore of the
shards it holds.

Expiry is judged on this worker's own clock, as KCL does: a lease owned by another worker
whose leaseCounter has not changed for ``failover_ms`` is expired. Renewals run every
failover/3 (the service's loop). Checkpoints are conditional on still owning the lease.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from consumers.kinesis.shards import ShardInfo, children_of
from consumers.leases.balancer import choose_leases
from consumers.leases.lease import Lease, LeaseLostError
from consumers.leases.table import LeaseTable
from consumers.protocols import EndReason
from gorse_cdc.errors import FatalError

log = logging.getLogger(__name__)


class LeaseCoordinator:
    def __init__(
        self,
        table: LeaseTable,
        worker_id: str,
        *,
        failover_ms: int = 10_000,
        max_steal: int = 1,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self.worker_id = worker_id
        self.failover_s = failover_ms / 1000
        self.max_steal = max_steal
        self.clock = clock
        self.rng = rng or random.Random()
        self.held: dict[str, Lease] = {}
        self._seen: dict[str, tuple[int, float]] = {}  # leaseKey -> (counter, when it changed)
        self.last_balance_at: float | None = None
        self.gone: set[str] = set()  # leases whose shard the stream no longer lists

    # ---- the table follows the stream ---------------------------------------------------------
    async def sync_shards(self, shards: list[ShardInfo]) -> int:
        """Create a lease for every shard that has none; returns how many were created."""
        leases = await self.table.list_leases()
        known = {le.lease_key for le in leases}
        listed = {s.shard_id for s in shards}
        gone = {le.lease_key for le in leases if not le.ended and le.lease_key not in listed}
        for key in sorted(gone - self.gone):
            log.error(
                "shard is gone from the stream before it was read to its end (trimmed after the "
                "retention period): its unread records are lost; children go on; the nightly "
                "reconcile repairs what they held",
                extra={"shard": key},
            )
        self.gone = gone
        created = 0
        for s in shards:
            if s.shard_id in known:
                continue
            lease = Lease(
                s.shard_id,
                parent_shard_ids=frozenset(s.parent_shard_ids),
                child_shard_ids=frozenset(children_of(shards, s.shard_id)),
                starting_hash_key=s.starting_hash_key,
                ending_hash_key=s.ending_hash_key,
            )
            created += await self.table.create_if_absent(lease)
        return created

    # ---- renew --------------------------------------------------------------------------------
    async def renew(self) -> list[str]:
        """Renew every held lease; returns the shards whose lease was lost."""
        lost = []
        for key, lease in list(self.held.items()):
            try:
                renewed = await self.table.renew(lease)
                if key in self.held:  # not ended or dropped meanwhile
                    self.held[key] = renewed
            except LeaseLostError:
                log.warning("lease lost", extra={"shard": key})
                self.held.pop(key, None)
                lost.append(key)
        return lost

    # ---- balance ------------------------------------------------------------------------------
    def _expired(self, leases: list[Lease]) -> set[str]:
        now = self.clock()
        expired = set()
        for le in leases:
            seen = self._seen.get(le.lease_key)
            if seen is None or seen[0] != le.lease_counter:
                self._seen[le.lease_key] = (le.lease_counter, now)
            elif le.lease_owner and now - seen[1] >= self.failover_s:
                expired.add(le.lease_key)
        return expired

    async def balance(self) -> list[Lease]:
        """One round: returns the leases newly taken (their shards are to be started)."""
        leases = await self.table.list_leases()
        expired = self._expired(leases)
        # a lease in our name we do not hold (a restart with the same id) is free to take
        view = [
            le.with_(lease_owner=None)
            if le.lease_owner == self.worker_id and le.lease_key not in self.held
            else le
            for le in leases
        ]
        taken = []
        for lease in choose_leases(view, self.worker_id, expired, self.max_steal, self.rng, self.gone):
            original = next(le for le in leases if le.lease_key == lease.lease_key)
            new = await self.table.take(original, self.worker_id)
            if new is None:
                continue  # another worker was faster
            log.info(
                "lease taken",
                extra={"shard": new.lease_key, "from": original.lease_owner, "checkpoint": new.checkpoint},
            )
            self.held[new.lease_key] = new
            self._seen[new.lease_key] = (new.lease_counter, self.clock())
            taken.append(new)
        self.last_balance_at = self.clock()
        return taken

    # ---- CheckpointStore (consumers.protocols) ------------------------------------------------
    async def checkpoint(self, shard_id: str, sequence_number: str) -> None:
        """Conditional on this worker's ownership, both here (a lease lost at the last renewal)
        and in the table (taken since)."""
        if shard_id not in self.held:
            raise LeaseLostError(shard_id)
        await self.table.checkpoint(shard_id, self.worker_id, sequence_number)

    async def shard_ended(
        self, shard_id: str, children: tuple[str, ...] = (), reason: EndReason = EndReason.CLOSED
    ) -> None:
        """SHARD_END, the children recorded, the lease released. The live consumer reads
        open shards without a stop point: only CLOSED is legal here."""
        if reason is not EndReason.CLOSED:
            raise FatalError(f"shard {shard_id}: the live consumer has no stop point ({reason.value})")
        if shard_id not in self.held:
            raise LeaseLostError(shard_id)
        await self.table.mark_ended(shard_id, self.worker_id, list(children))
        await self.table.release(shard_id, self.worker_id)
        self.held.pop(shard_id, None)

    def drop(self, shard_id: str) -> None:
        self.held.pop(shard_id, None)

    async def release_all(self) -> None:
        for key in list(self.held):
            await self.table.release(key, self.worker_id)
            self.held.pop(key, None)
