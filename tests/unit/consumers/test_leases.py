from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from consumers.leases.balancer import choose_leases, eligible
from consumers.leases.lease import SHARD_END, Lease


def lease(
    key: str, owner: str | None = None, parents: tuple[str, ...] = (), cp: str = "TRIM_HORIZON"
) -> Lease:
    return Lease(key, owner, 1, cp, parent_shard_ids=frozenset(parents))


def test_item_round_trip_keeps_kcl_schema() -> None:
    le = Lease("shard-1", "w1", 7, "4955", 0, 2, frozenset({"shard-0"}), frozenset({"shard-2"}), "0", "99")
    item = le.to_item()
    assert "handoffTo" not in item and "pinned" not in item  # only KCL's attributes by default
    moving = le.with_(handoff_to="w2", pinned=True)
    assert Lease.from_item(moving.to_item()) == moving
    assert item["leaseKey"] == {"S": "shard-1"}
    assert item["parentShardId"] == {"SS": ["shard-0"]}
    assert Lease.from_item(item) == le
    assert "parentShardId" not in lease("x").to_item()  # string sets cannot be empty


def test_children_wait_for_every_parent() -> None:
    leases = [
        lease("p1", cp=SHARD_END),
        lease("p2", owner="w2"),
        lease("c", parents=("p1", "p2")),
        lease("d", parents=("p1",)),
    ]
    assert {le.lease_key for le in eligible(leases)} == {"p2", "d"}


def test_takes_free_and_expired_first() -> None:
    leases = [lease("a", "w2"), lease("b", "w2"), lease("c"), lease("d", "w3")]
    chosen = choose_leases(leases, "me", expired={"d"}, max_steal=1, rng=random.Random(1)).take
    # 4 leases, live workers w2 and me -> target 2: both the free and the expired lease
    assert {le.lease_key for le in chosen} == {"c", "d"}


def test_steals_at_most_max_from_the_most_loaded() -> None:
    leases = [lease(str(i), "w2") for i in range(4)]
    choice = choose_leases(leases, "me", expired=set(), max_steal=1, rng=random.Random(1))
    assert choice.take == [] and len(choice.request) == 1 and choice.request[0].lease_owner == "w2"
    none = choose_leases([*leases[:2], lease("x", "me")], "me", set(), 1)
    assert none.take == [] and none.request == []
    # a pending move counts for the requester and is not asked for twice
    pending = [leases[0].with_(handoff_to="me"), *leases[1:]]
    again = choose_leases(pending, "me", set(), 2, rng=random.Random(1))
    assert again.take == [] and len(again.request) == 1 and again.request[0].lease_key != "0"


def test_pinned_leases_are_left_to_their_replay_until_they_expire() -> None:
    leases = [lease("a", "replay").with_(pinned=True), lease("b", "w2")]
    assert choose_leases(leases, "me", set(), 1).request == []  # 1 eligible lease, w2 has it
    assert [le.lease_key for le in choose_leases(leases, "me", {"a"}, 1).take] == ["a"]


@given(st.integers(1, 12), st.integers(1, 5))
def test_repeated_rounds_converge_to_balance(shards: int, workers: int) -> None:
    rng = random.Random(0)
    names = [f"w{i}" for i in range(workers)]
    owners: dict[str, str | None] = {f"s{i}": None for i in range(shards)}
    for _ in range(shards * workers + 5):
        for w in names:
            leases = [lease(k, o) for k, o in owners.items()]
            choice = choose_leases(leases, w, set(), 1, rng)
            for chosen in [*choice.take, *choice.request]:  # a request is honoured at once here
                owners[chosen.lease_key] = w
    counts = [sum(1 for o in owners.values() if o == w) for w in names]
    assert all(o is not None for o in owners.values())
    assert max(counts) - min(counts) <= 1
