"""A shard lease, in KCL's DynamoDB schema. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gorse_cdc.errors import FatalError

SHARD_END = "SHARD_END"
TRIM_HORIZON = "TRIM_HORIZON"


class LeaseLostError(FatalError):
    """This worker no longer owns the lease: stop the shard, do not checkpoint. Fatal for the
    shard (never retried, never dead-letters), not for the process: the service stops the
    shard's worker and goes on with its other leases."""

    def __init__(self, shard_id: str) -> None:
        super().__init__(f"lease of shard {shard_id} lost: another worker owns it now")
        self.shard_id = shard_id


@dataclass(frozen=True, slots=True)
class Lease:
    lease_key: str  # the shard id
    lease_owner: str | None = None
    lease_counter: int = 0
    checkpoint: str = TRIM_HORIZON
    checkpoint_sub_sequence_number: int = 0
    owner_switches_since_checkpoint: int = 0
    parent_shard_ids: frozenset[str] = frozenset()
    child_shard_ids: frozenset[str] = frozenset()
    starting_hash_key: str = ""
    ending_hash_key: str = ""
    # not in KCL's schema (KCL leaves unknown attributes alone): a graceful move requested by
    # the worker named here (consumers.leases.coordinator), and a lease pinned by a replay
    # (consumers.replay.borrow) that no live worker may request or steal until it expires
    handoff_to: str | None = None
    pinned: bool = False

    @property
    def ended(self) -> bool:
        return self.checkpoint == SHARD_END

    def with_(self, **changes: Any) -> Lease:
        return replace(self, **changes)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "leaseKey": {"S": self.lease_key},
            "leaseCounter": {"N": str(self.lease_counter)},
            "checkpoint": {"S": self.checkpoint},
            "checkpointSubSequenceNumber": {"N": str(self.checkpoint_sub_sequence_number)},
            "ownerSwitchesSinceCheckpoint": {"N": str(self.owner_switches_since_checkpoint)},
        }
        if self.lease_owner:
            item["leaseOwner"] = {"S": self.lease_owner}
        if self.parent_shard_ids:  # DynamoDB string sets cannot be empty
            item["parentShardId"] = {"SS": sorted(self.parent_shard_ids)}
        if self.child_shard_ids:
            item["childShardIds"] = {"SS": sorted(self.child_shard_ids)}
        if self.starting_hash_key:
            item["startingHashKey"] = {"S": self.starting_hash_key}
        if self.ending_hash_key:
            item["endingHashKey"] = {"S": self.ending_hash_key}
        if self.handoff_to:
            item["handoffTo"] = {"S": self.handoff_to}
        if self.pinned:
            item["pinned"] = {"BOOL": True}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        def s(name: str, default: str = "") -> str:
            return str(item.get(name, {}).get("S", default))

        def n(name: str) -> int:
            return int(item.get(name, {}).get("N", "0"))

        def ss(name: str) -> frozenset[str]:
            return frozenset(item.get(name, {}).get("SS", []))

        return cls(
            s("leaseKey"),
            s("leaseOwner") or None,
            n("leaseCounter"),
            s("checkpoint", TRIM_HORIZON),
            n("checkpointSubSequenceNumber"),
            n("ownerSwitchesSinceCheckpoint"),
            ss("parentShardId"),
            ss("childShardIds"),
            s("startingHashKey"),
            s("endingHashKey"),
            s("handoffTo") or None,
            bool(item.get("pinned", {}).get("BOOL", False)),
        )
