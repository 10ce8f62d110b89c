"""Phase 4 of a plan: delete the feedback types a re-rate made stale, in as few calls as are
exact.

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
    stale: Iterable[StaleKey], put: dict[tuple[str, str], Feedback], now: datetime, at: int = READ_FIRST_AT
) -> tuple[list[StaleKey], dict[str, list[StaleKey]]]:
    """(keys to delete blindly, user -> keys to check against one read of the user's feedback).
    Pure."""
    by_user: dict[str, list[StaleKey]] = {}
    for key in stale:
        by_user.setdefault(key[1], []).append(key)
    blind: list[StaleKey] = []
    checked: dict[str, list[StaleKey]] = {}
    for user, keys in by_user.items():
        future = any(_later(put.get((user, k[2])), now) for k in keys)
        if len(keys) >= at and not future:
            checked[user] = keys
        else:
            blind.extend(keys)
    return blind, checked


def _later(fb: Feedback | None, now: datetime) -> bool:
    if fb is None or fb.timestamp is None:
        return False
    ts = fb.timestamp if fb.timestamp.tzinfo else fb.timestamp.replace(tzinfo=UTC)
    return ts > now


async def existing(client: GorseClient, user: str, keys: list[StaleKey]) -> list[StaleKey]:
    """The keys of ``keys`` that Gorse holds (one GET of the user's feedback)."""
    held = {(f.feedback_type, f.item_id) for f in await client.user_feedback(user)}
    return [k for k in keys if (k[0], k[2]) in held]
