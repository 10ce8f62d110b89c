"""LeaseCoordinator: this worker's view of the lease table, and the CheckpointStore of the
shards it holds.

Expiry is judged on this worker's own clock, as KCL does: a lease owned by another worker
whose leaseCounter has not changed for ``failover_ms`` is expired. Renewals run every
failover/3 (the service's loop). Checkpoints are conditional on still owning the lease.

Fencing (one writer per shard at any moment, so a key's writes never go back in time):
- a steal is a handoff request; the owner sees it at its next renewal, flushes and
  checkpoints its batch (``handoff_grace``; then it aborts), and only then hands the lease
  over (``handoffs_due`` / ``hand_off``). A requester whose owner never answers (a KCL
  worker knows nothing of handoffTo) takes the lease after ``FORCE_AFTER`` failover times.
- the write deadline: a held lease not renewed for ``WRITE_DEADLINE`` of the failover time
  may not be written for any more (``may_write``): others can take it at the failover time,
  so the old owner has stopped well before. The service enforces it from a timer of its own
  (consumers.service), never from the loop that waits on DynamoDB; renewals run concurrently,
  each bounded by ``RENEW_TIMEOUT`` of the failover time, and the DynamoDB client's socket
  timeouts are ``call_timeout_s`` (consumers.wiring), so a hung DynamoDB costs a failed round,
  not a stalled one.
"""

from __future__ import annotations

import asyncio
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
WRITE_DEADLINE = 0.6  # share of the failover time a lease may go unrenewed and still be written
HANDOFF_GRACE = 0.5  # share of the failover time an owner has to flush before handing off
FORCE_AFTER = 3.0  # failover times a requester waits for a handoff before taking the lease
RENEW_TIMEOUT = 0.25  # share of the failover time one renewal may take (interval 1/3, deadline 0.6)


def call_timeout_s(failover_ms: int) -> float:
    """Connect/read timeout of one DynamoDB call of the lease path: a tenth of the failover time
    (two attempts fit in RENEW_TIMEOUT), never under 0.2 s."""
    return max(0.2, failover_ms / 1000 / 10)


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
        self.renewed_at: dict[str, float] = {}  # held lease -> last successful renew / take
        self.handoff_requested: dict[str, tuple[str, float]] = {}  # held -> (to whom, seen at)
        self._requested: dict[str, float] = {}  # leases this worker asked for -> when

    # ---- fencing ------------------------------------------------------------------------------
    def may_write(self, shard_id: str) -> bool:
        at = self.renewed_at.get(shard_id)
        return (
            shard_id in self.held and at is not None and self.clock() - at <= self.failover_s * WRITE_DEADLINE
        )

    def handoff_overdue(self, shard_id: str) -> bool:
        req = self.handoff_requested.get(shard_id)
        return req is not None and self.clock() - req[1] > self.failover_s * HANDOFF_GRACE

    async def hand_off(self, shard_id: str) -> bool:
        """Give a held lease (its worker stopped, its last batch checkpointed) to the worker
        that asked for it."""
        req = self.handoff_requested.pop(shard_id, None)
        self.held.pop(shard_id, None)
        self.renewed_at.pop(shard_id, None)
        if req is None:
            return False
        done = await self.table.hand_off(shard_id, self.worker_id, req[0])
        message = "lease handed off" if done else "lease handoff lost a race"
        log.info(message, extra={"shard": shard_id, "to": req[0]})
        return done

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
        """Renew every held lease, all at once, each within RENEW_TIMEOUT of the failover time;
        returns the shards whose lease was lost. A renewal that fails or times out is simply
        not counted (the write deadline runs on); the others are unaffected."""
        held = list(self.held.items())
        limit = self.failover_s * RENEW_TIMEOUT
        results = await asyncio.gather(
            *(asyncio.wait_for(self.table.renew(lease), limit) for _, lease in held), return_exceptions=True
        )
        lost = []
        for (key, _), result in zip(held, results, strict=True):
            if isinstance(result, Lease):
                if key in self.held:  # not ended or dropped meanwhile
                    self.held[key] = result
                    self.renewed_at[key] = self.clock()
                    if result.handoff_to and key not in self.handoff_requested:
                        log.info("handoff requested", extra={"shard": key, "to": result.handoff_to})
                        self.handoff_requested[key] = (result.handoff_to, self.clock())
            elif isinstance(result, LeaseLostError):
                log.warning("lease lost", extra={"shard": key})
                self.drop(key)
                lost.append(key)
            elif isinstance(result, Exception):
                log.warning("lease renewal failed: %r", result, extra={"shard": key})
            else:
                raise result  # CancelledError and the like
        return lost

    def next_deadline(self) -> float | None:
        """When (on ``clock``) the first held lease passes its write deadline; None: none held."""
        ats = [self.renewed_at[k] for k in self.held if k in self.renewed_at]
        return min(ats) + self.failover_s * WRITE_DEADLINE if ats else None

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
        choice = choose_leases(view, self.worker_id, expired, self.max_steal, self.rng, self.gone)
        for lease in choice.request:
            if await self.table.request_handoff(lease, self.worker_id):
                log.info("handoff requested from %s", lease.lease_owner, extra={"shard": lease.lease_key})
                self._requested[lease.lease_key] = self.clock()
        now = self.clock()
        forced = [
            le
            for le in leases
            if le.handoff_to == self.worker_id
            and le.lease_owner not in (None, self.worker_id)
            and now - self._requested.setdefault(le.lease_key, now) > self.failover_s * FORCE_AFTER
        ]
        for le in forced:
            log.warning(
                "owner %s did not hand the lease over in %.0f s: taking it",
                le.lease_owner,
                self.failover_s * FORCE_AFTER,
                extra={"shard": le.lease_key},
            )
        taken = []
        for lease in [*choice.take, *forced]:
            original = next(le for le in leases if le.lease_key == lease.lease_key)
            self._requested.pop(lease.lease_key, None)
            new = await self.table.take(original, self.worker_id)
            if new is None:
                continue  # another worker was faster
            log.info(
                "lease taken",
                extra={"shard": new.lease_key, "from": original.lease_owner, "checkpoint": new.checkpoint},
            )
            self.held[new.lease_key] = new
            self.renewed_at[new.lease_key] = self.clock()
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
        self.drop(shard_id)

    def drop(self, shard_id: str) -> None:
        self.held.pop(shard_id, None)
        self.renewed_at.pop(shard_id, None)
        self.handoff_requested.pop(shard_id, None)

    async def release_all(self) -> None:
        """At shutdown: free (a requester takes a free lease at its next round; handing it
        over could leave it to a requester that is stopping too)."""
        handed = {le.lease_key for le in await self.table.list_leases() if le.lease_owner == self.worker_id}
        for key in sorted(handed | set(self.held)):  # incl. leases handed to us, not yet taken
            await self.table.release(key, self.worker_id)
            self.drop(key)
