"""Phase 4 of a plan: delete the feedback types a re-rate made stale, in as few calls as are
exact.

With remembered feedback (consumers.sink.liked: ``remember_likes``, on by default) a stale key
is deleted only when the user holds that type; the memory is read once per user and kept
current by this worker's plans. What follows is the path without it.

Gorse has no delete-by-user endpoint, so every stale (type, user, item) used to be one DELETE,
even when nothing was there: a full load (each LOAD record may replace an older type) sent one
DELETE per rating. A user with ``READ_FIRST_AT`` or more stale keys in one plan now costs one
GET of the user's feedback, then a DELETE only for the keys that exist. This is exact because
one worker writes each user's feedback (the user's shard owner), and the puts of the same plan
ran before (phase 3).

Gorse hides feedback timestamped in the future from that GET (later than now + clock_error):
such keys would be missed. So a user whose feedback in this plan is timestamped later than
``now`` keeps the blind deletes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.models import Feedback

StaleKey = tuple[str, str, str]  # (type, user, item)
READ_FIRST_AT = 3


def split(
    stale: Iterable[StaleKey],
    put: dict[tuple[str, str], Feedback],
    now: datetime,
    at: int | None = None,
) -> tuple[list[StaleKey], dict[str, list[StaleKey]]]:
    """(keys to delete blindly, user -> keys to check against what the user holds: one read of
    the user's feedback, or the worker's memory of it). ``at``: the fewest keys worth a check
    (``READ_FIRST_AT`` by default; 1 when the memory answers). Pure."""
    at = READ_FIRST_AT if at is None else at
    by_user: dict[str, list[StaleKey]] = {}
    for key in stale:
        by_user.setdefault(key[1], []).append(key)
    blind: list[StaleKey] = []
    checked: dict[str, list[StaleKey]] = {}
    for user, keys in by_user.items():
        future = any(later(put.get((user, k[2])), now) for k in keys)
        if len(keys) >= at and not future:
            checked[user] = keys
        else:
            blind.extend(keys)
    return blind, checked


def aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def later(fb: Feedback | None, now: datetime) -> bool:
    """Timestamped later than ``now`` (Gorse hides it from reads until then)."""
    if fb is None or fb.timestamp is None:
        return False
    return aware(fb.timestamp) > now


async def existing(client: GorseClient, user: str, keys: list[StaleKey]) -> list[StaleKey]:
    """The keys of ``keys`` that Gorse holds (one GET of the user's feedback)."""
    held = {(f.feedback_type, f.item_id) for f in await client.user_feedback(user)}
    return [k for k in keys if (k[0], k[2]) in held]
