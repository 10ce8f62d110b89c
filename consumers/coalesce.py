"""Coalesce a shard's operations per entity key into one write plan. Pure: no I/O.

Executing the plan (in the phase order of ``WritePlan``) leaves Gorse exactly as executing
every operation one by one in commit order would, with far fewer calls:

- per user / item key: the delete (if any) runs first, then the last upsert that came after
  the last delete. An upsert before a delete is dropped; a delete followed by a re-insert
  keeps the delete (in Gorse it also wipes the entity's feedback).
- per feedback key (user, item): only the operations after the last wipe of its user
  (DeleteUser) or item (DeleteItem) count, and of those the last one wins: a put (its stale
  types deleted after it) or a delete of every type. Feedback written after a DeleteUser
  runs after that delete because deletes of entities are phase 1 and feedback phase 3.
  A feedback delete with no operation on its pair since the wipe is dropped: the entity's
  delete already removed that feedback in Gorse. This is the FK cascade of an erasure (the
  user's delete, then one delete per rating, on the user's shard): one call, not hundreds.
- users whose derived liked labels may change: those with a surviving feedback change or an
  upsert, unless the batch ends with the user deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.mapping.ops import (
    DeleteFeedback,
    DeleteItem,
    DeleteUser,
    EntityKey,
    FanOutLikers,
    Operation,
    PutEvent,
    PutFeedback,
    RefreshLiked,
    UpsertItem,
    UpsertUser,
)

PairKey = tuple[str, str]  # (user_id, item_id)


@dataclass
class WritePlan:
    """Phases, in order: 1 delete users and items; 2 upsert items; 3 put feedback;
    4 delete stale feedback types and deleted feedback; 5 write users (demographics from
    ``upsert_users`` or Gorse, liked labels recomputed) for ``liked_users``."""

    delete_users: list[str] = field(default_factory=list)
    delete_items: list[str] = field(default_factory=list)
    upsert_items: dict[str, Item] = field(default_factory=dict)
    upsert_users: dict[str, User] = field(default_factory=dict)
    put_feedback: dict[PairKey, Feedback] = field(default_factory=dict)
    put_events: dict[tuple[str, str, str], Feedback] = field(default_factory=dict)  # (type, user, item)
    stale_feedback: list[tuple[str, str, str]] = field(default_factory=list)  # (type, user, item)
    delete_feedback: list[PairKey] = field(default_factory=list)
    liked_users: set[str] = field(default_factory=set)
    # items changed on other shards, told by RefreshLiked records: read fresh before the liked
    # labels are recomputed (the values are the ones told, for diagnosis)
    item_values: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    # likers of edited items still to be told (fan-out records, gorse_cdc.refresh_records): told after
    # every other phase, a bounded number per plan
    fan_out: list[FanOutLikers] = field(default_factory=list)
    # items whose feedback of a user deleted in this plan the user's delete removes (its
    # rating deletes coalesced away): Gorse may hold them as blanks it auto-inserted, which
    # the sink removes like the items of ``delete_feedback`` (GorseSink._drop_orphan_items)
    orphan_checks: set[str] = field(default_factory=set)
    # users another writer wrote (RefreshLiked.reread): what is remembered of them is forgotten
    # before their liked labels are recomputed
    reread_users: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (
            self.delete_users
            or self.delete_items
            or self.upsert_items
            or self.upsert_users
            or self.put_feedback
            or self.put_events
            or self.stale_feedback
            or self.delete_feedback
            or self.liked_users
            or self.item_values
            or self.fan_out
        )

    def size(self) -> int:
        return (
            len(self.delete_users)
            + len(self.delete_items)
            + len(self.upsert_items)
            + len(self.upsert_users)
            + len(self.put_feedback)
            + len(self.put_events)
            + len(self.stale_feedback)
            + len(self.delete_feedback)
        )


class PlanBuilder:
    """Coalesces operations one at a time, in commit order, keeping only each key's final
    state: memory grows with the number of keys, not of operations (a replay coalesces a whole
    shard range with it before writing anything)."""

    def __init__(self) -> None:
        self.operations = 0
        self._deleted_users: set[str] = set()
        self._deleted_items: set[str] = set()
        self._users: dict[str, User] = {}  # the last upsert after the last delete
        self._items: dict[str, Item] = {}
        self._feedback: dict[PairKey, tuple[PutFeedback | DeleteFeedback, int]] = {}  # op, ops since wipe
        self._pairs_of_user: dict[str, set[PairKey]] = {}
        self._pairs_of_item: dict[str, set[PairKey]] = {}
        self._refresh: set[str] = set()
        self._reread: set[str] = set()
        self._events: dict[tuple[str, str, str], Feedback] = {}  # the last event per (type, user, item)
        self._item_values: dict[str, tuple[str, ...] | None] = {}
        self._fan_out: dict[EntityKey, FanOutLikers] = {}
        self.wiped_deletes = 0  # feedback deletes an entity's delete in this plan made moot
        self._orphan_checks: set[str] = set()

    def _wipe(self, pairs: set[PairKey] | None) -> None:
        for pair in pairs or ():
            self._feedback.pop(pair, None)
            self._pairs_of_user.get(pair[0], set()).discard(pair)
            self._pairs_of_item.get(pair[1], set()).discard(pair)

    def add(self, op: Operation) -> None:
        self.operations += 1
        if isinstance(op, UpsertUser):
            self._users[op.user.user_id] = op.user
        elif isinstance(op, DeleteUser):
            self._deleted_users.add(op.user_id)
            self._users.pop(op.user_id, None)
            pairs = self._pairs_of_user.pop(op.user_id, None)
            self._orphan_checks.update(i for _, i in pairs or ())
            self._wipe(pairs)
            self._events = {k: v for k, v in self._events.items() if k[1] != op.user_id}
        elif isinstance(op, UpsertItem):
            self._items[op.item.item_id] = op.item
        elif isinstance(op, DeleteItem):
            self._deleted_items.add(op.item_id)
            self._items.pop(op.item_id, None)
            self._wipe(self._pairs_of_item.pop(op.item_id, None))
            self._events = {k: v for k, v in self._events.items() if k[2] != op.item_id}
        elif isinstance(op, PutEvent):
            self._events[op.feedback.key] = op.feedback
        elif isinstance(op, RefreshLiked):
            self._refresh.add(op.user_id)
            self._item_values.update(op.items)
            if op.reread:
                self._reread.add(op.user_id)
        elif isinstance(op, FanOutLikers):  # a promise, not a state: every one is kept
            self._fan_out[(*op.entity_key, *(op.users or ()))] = op
        else:
            pair = (op.entity_key[1], op.entity_key[2])
            prev = self._feedback.get(pair)
            if (
                prev is None
                and isinstance(op, DeleteFeedback)
                and (pair[0] in self._deleted_users or pair[1] in self._deleted_items)
            ):
                self.wiped_deletes += 1
                self._refresh.add(pair[0])  # its liked labels lose the item (dropped if erased)
                if pair[0] in self._deleted_users:
                    self._orphan_checks.add(pair[1])
                return
            self._feedback[pair] = (op, prev[1] + 1 if prev else 1)
            self._pairs_of_user.setdefault(pair[0], set()).add(pair)
            self._pairs_of_item.setdefault(pair[1], set()).add(pair)

    def extend(self, operations: Iterable[Operation]) -> PlanBuilder:
        for op in operations:
            self.add(op)
        return self

    @property
    def keys(self) -> int:
        return (
            len(self._deleted_users | self._users.keys())
            + len(self._deleted_items | self._items.keys())
            + len(self._feedback)
            + len(self._events)
        )

    def build(self) -> WritePlan:
        plan = WritePlan()
        plan.delete_users = sorted(self._deleted_users)
        plan.delete_items = sorted(self._deleted_items)
        for uid, user in sorted(self._users.items()):
            plan.upsert_users[uid] = user
            plan.liked_users.add(uid)
        for iid, item in sorted(self._items.items()):
            plan.upsert_items[iid] = item
        for (uid, iid), (last, alive) in sorted(self._feedback.items()):
            if isinstance(last, PutFeedback):
                plan.put_feedback[(uid, iid)] = last.feedback
                if not (last.fresh and alive == 1):  # an insert alone needs no stale deletes
                    plan.stale_feedback.extend((t, uid, iid) for t in last.stale_types)
            else:
                plan.delete_feedback.append((uid, iid))
            plan.liked_users.add(uid)
        plan.put_events = dict(sorted(self._events.items()))
        plan.liked_users |= self._refresh
        plan.reread_users = set(self._reread)
        plan.item_values = dict(self._item_values)
        plan.fan_out = list(self._fan_out.values())
        plan.orphan_checks = self._orphan_checks - self._deleted_items
        # a user deleted and not re-inserted has no liked labels to keep
        plan.liked_users -= {u for u in self._deleted_users if u not in self._users}
        return plan


def coalesce(operations: Iterable[Operation]) -> WritePlan:
    """``operations``: every operation of a batch, in commit order."""
    return PlanBuilder().extend(operations).build()
