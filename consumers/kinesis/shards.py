"""The stream's shards and their lineage (ListShards). Children are found through the
children's ParentShardId / AdjacentParentShardId, since kinesalite returns no ChildShards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ShardInfo:
    shard_id: str
    parent_shard_ids: tuple[str, ...] = ()
    starting_hash_key: str = ""
    ending_hash_key: str = ""
    closed: bool = False  # has an EndingSequenceNumber

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ShardInfo:
        parents = tuple(p for p in (d.get("ParentShardId"), d.get("AdjacentParentShardId")) if p)
        hashes = d.get("HashKeyRange") or {}
        seqs = d.get("SequenceNumberRange") or {}
        return cls(
            d["ShardId"],
            parents,
            str(hashes.get("StartingHashKey", "")),
            str(hashes.get("EndingHashKey", "")),
            bool(seqs.get("EndingSequenceNumber")),
        )


def children_of(shards: list[ShardInfo], shard_id: str) -> list[str]:
    return sorted(s.shard_id for s in shards if shard_id in s.parent_shard_ids)


async def list_shards(client: Any, stream_name: str) -> list[ShardInfo]:
    shards: list[ShardInfo] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        resp = await client.list_shards(**kwargs)
        shards.extend(ShardInfo.from_api(s) for s in resp.get("Shards", []))
        token = resp.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}
