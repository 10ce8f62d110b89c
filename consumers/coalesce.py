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
- users whose derived liked labels may change: those with a surviving feedback change or an
  upsert, unless the batch ends with the user deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.mapping.ops import (
    DeleteFeedback,
    DeleteItem,
    DeleteUser,
    Operation,
    PutFeedback,
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
    stale_feedback: list[tuple[str, str, str]] = field(default_factory=list)  # (type, user, item)
    delete_feedback: list[PairKey] = field(default_factory=list)
    liked_users: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (
            self.delete_users
            or self.delete_items
            or self.upsert_items
            or self.upsert_users
            or self.put_feedback
            or self.stale_feedback
            or self.delete_feedback
            or self.liked_users
        )

    def size(self) -> int:
        return (
            len(self.delete_users)
            + len(self.delete_items)
            + len(self.upsert_items)
            + len(self.upsert_users)
            + len(self.put_feedback)
            + len(self.stale_feedback)
            + len(self.delete_feedback)
        )


def _entity_plan(
    ops: Sequence[tuple[int, Operation]],
) -> tuple[dict[str, int], dict[str, tuple[int, Operation]]]:
    """Per entity id: index of the last delete, and the last upsert after it."""
    last_delete: dict[str, int] = {}
    last_upsert: dict[str, tuple[int, Operation]] = {}
    for idx, op in ops:
        key = op.entity_key[1]
        if isinstance(op, DeleteUser | DeleteItem):
            last_delete[key] = idx
            last_upsert.pop(key, None)
        else:
            last_upsert[key] = (idx, op)
    return last_delete, last_upsert


def coalesce(operations: Iterable[Operation]) -> WritePlan:
    """``operations``: every operation of a batch, in commit order."""
    users: list[tuple[int, Operation]] = []
    items: list[tuple[int, Operation]] = []
    feedback: dict[PairKey, list[tuple[int, PutFeedback | DeleteFeedback]]] = {}
    for idx, op in enumerate(operations):
        if isinstance(op, UpsertUser | DeleteUser):
            users.append((idx, op))
        elif isinstance(op, UpsertItem | DeleteItem):
            items.append((idx, op))
        else:
            pair = (op.entity_key[1], op.entity_key[2])
            feedback.setdefault(pair, []).append((idx, op))

    plan = WritePlan()
    user_deleted_at, user_upsert = _entity_plan(users)
    item_deleted_at, item_upsert = _entity_plan(items)
    plan.delete_users = sorted(user_deleted_at)
    plan.delete_items = sorted(item_deleted_at)
    for uid, (_, op) in sorted(user_upsert.items()):
        assert isinstance(op, UpsertUser)
        plan.upsert_users[uid] = op.user
        plan.liked_users.add(uid)
    for iid, (_, op) in sorted(item_upsert.items()):
        assert isinstance(op, UpsertItem)
        plan.upsert_items[iid] = op.item

    for (uid, iid), fops in sorted(feedback.items()):
        wiped_at = max(user_deleted_at.get(uid, -1), item_deleted_at.get(iid, -1))
        alive = [op for idx, op in fops if idx > wiped_at]
        if not alive:
            continue
        last = alive[-1]
        if isinstance(last, PutFeedback):
            plan.put_feedback[(uid, iid)] = last.feedback
            if not (last.fresh and len(alive) == 1):  # an insert alone needs no stale deletes
                plan.stale_feedback.extend((t, uid, iid) for t in last.stale_types)
        else:
            plan.delete_feedback.append((uid, iid))
        plan.liked_users.add(uid)

    # a user deleted and not re-inserted has no liked labels to keep
    plan.liked_users -= {u for u in user_deleted_at if u not in user_upsert}
    return plan
