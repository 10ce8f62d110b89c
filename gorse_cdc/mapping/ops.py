"""Gorse operations: what one row change asks of Gorse. Pure values, no I/O.

Each operation names the entity it touches (``entity_key``) so changes can be coalesced per
key, and the user whose derived liked labels it may change (``liked_labels_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gorse_cdc.gorse.models import Feedback, Item, User

EntityKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpsertUser:
    """Demographic labels only; the derived liked labels are merged in by the writer."""

    user: User

    @property
    def entity_key(self) -> EntityKey:
        return ("user", self.user.user_id)

    @property
    def liked_labels_of(self) -> str | None:
        return self.user.user_id


@dataclass(frozen=True, slots=True)
class DeleteUser:
    user_id: str

    @property
    def entity_key(self) -> EntityKey:
        return ("user", self.user_id)

    @property
    def liked_labels_of(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class UpsertItem:
    item: Item

    @property
    def entity_key(self) -> EntityKey:
        return ("item", self.item.item_id)

    @property
    def liked_labels_of(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class DeleteItem:
    item_id: str

    @property
    def entity_key(self) -> EntityKey:
        return ("item", self.item_id)

    @property
    def liked_labels_of(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class PutFeedback:
    """PUT the row, then delete every other type for (user, item) (a threshold crossing).

    ``fresh``: the row was inserted (no row for this key existed in the source just before,
    and the delete that removed any earlier one precedes it on the same shard), so when
    nothing else touches the pair in the same batch the stale-type deletes can be skipped:
    one request per new rating instead of two."""

    feedback: Feedback
    stale_types: tuple[str, ...]
    fresh: bool = False

    @property
    def entity_key(self) -> EntityKey:
        return ("feedback", self.feedback.user_id, self.feedback.item_id)

    @property
    def liked_labels_of(self) -> str | None:
        return self.feedback.user_id


@dataclass(frozen=True, slots=True)
class DeleteFeedback:
    """Delete every feedback type for (user, item)."""

    user_id: str
    item_id: str

    @property
    def entity_key(self) -> EntityKey:
        return ("feedback", self.user_id, self.item_id)

    @property
    def liked_labels_of(self) -> str | None:
        return self.user_id


@dataclass(frozen=True, slots=True)
class RefreshLiked:
    """Recompute a user's liked labels: an item they liked changed its label values on another
    shard (``items``: the new values, None for a deleted item). Not a source change: the item's
    writer puts it on the user's own shard, so only the user's shard ever writes the user.
    ``reread``: another writer (the reconcile's repair) wrote the user's feedback or row behind
    the owner's back: the owner forgets what it remembers of the user and reads it again."""

    user_id: str
    items: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    reread: bool = False

    @property
    def entity_key(self) -> EntityKey:
        return ("refresh", self.user_id)

    @property
    def liked_labels_of(self) -> str | None:
        return self.user_id


@dataclass(frozen=True, slots=True)
class FanOutLikers:
    """Tell the users who like an item that its label values changed (a RefreshLiked record
    on each one's shard). Not a source change: a promise the item's writer puts on the item's
    own shard *before* it writes the item, kept by whoever owns that shard next, in bounded
    steps (gorse_cdc.refresh_records). ``users``: the likers to tell (a deleted item: Gorse no longer
    knows them); None: the likers Gorse holds, in user id order; both only after ``after``."""

    item_id: str
    after: str = ""
    users: tuple[str, ...] | None = None

    @property
    def entity_key(self) -> EntityKey:
        return ("fan-out", self.item_id, self.after)

    @property
    def liked_labels_of(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class PutEvent:
    """An engagement event (play, complete, ...) as Gorse feedback of its own type. Keyed by
    (type, user, item): it never replaces a rating's like/unlike, nor another event type."""

    feedback: Feedback

    @property
    def entity_key(self) -> EntityKey:
        return ("event", *self.feedback.key)

    @property
    def liked_labels_of(self) -> str | None:
        return None


Operation = (
    UpsertUser
    | DeleteUser
    | UpsertItem
    | DeleteItem
    | PutFeedback
    | DeleteFeedback
    | RefreshLiked
    | PutEvent
    | FanOutLikers
)


def describe(op: Operation) -> dict[str, Any]:
    """A JSON-able description (dry runs, logs, dead letters)."""
    name = type(op).__name__
    if isinstance(op, UpsertUser):
        return {"op": name, **op.user.to_json()}
    if isinstance(op, UpsertItem):
        return {"op": name, **op.item.to_json()}
    if isinstance(op, PutFeedback):
        return {"op": name, **op.feedback.to_json(), "stale_types": list(op.stale_types)}
    if isinstance(op, PutEvent):
        return {"op": name, **op.feedback.to_json()}
    if isinstance(op, DeleteUser):
        return {"op": name, "UserId": op.user_id}
    if isinstance(op, DeleteItem):
        return {"op": name, "ItemId": op.item_id}
    if isinstance(op, RefreshLiked):
        return {"op": name, "UserId": op.user_id, "Items": {i: v for i, v in op.items}}
    if isinstance(op, FanOutLikers):
        return {"op": name, "ItemId": op.item_id, "After": op.after, "Users": op.users}
    return {"op": name, "UserId": op.user_id, "ItemId": op.item_id}
