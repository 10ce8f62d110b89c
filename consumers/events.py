"""Engagement event records (the gateway's own Kinesis stream): recognised and parsed here,
mapped by the shared mapping (``Mapper.map_event``, the ``[events]`` section).

Wire format (see gateway/events.py, which writes it): {"gorse-cdc": "event", "user": ...,
"item": ..., "type": ..., "ts": ..., "value": ...}. A record marked as an event that does not
parse is a PermanentRecordError: it goes to the dead-letter store with its reason.
"""

from __future__ import annotations

from typing import Any

import orjson

from gorse_cdc.errors import PermanentRecordError

KIND = "event"
EVENTS_TABLE = "events"  # the label in metrics and dead letters
_MARK = b'"gorse-cdc":"event"'


def decode_event(data: bytes) -> dict[str, Any] | None:
    """The event's body; None when the record is not an event record."""
    if _MARK not in data[:40]:
        return None
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise PermanentRecordError(f"event record is not JSON: {e}") from None
    if not isinstance(body, dict) or body.get("gorse-cdc") != KIND:
        raise PermanentRecordError("event record is not a JSON object of kind 'event'")
    return body
