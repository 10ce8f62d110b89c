"""Events through the shared mapping and the coalescer: their own feedback types, never a
rating's, and every (type, user, item) kept."""

from __future__ import annotations

import orjson
import pytest

from consumers.coalesce import coalesce
from consumers.events import decode_event
from gorse_cdc.errors import PermanentRecordError
from gorse_cdc.mapping import Mapper, MappingSpec, load_spec
from gorse_cdc.mapping.ops import DeleteUser, PutEvent


def event(user: str, item: str, etype: str, **extra: object) -> dict[str, object]:
    return {
        "gorse-cdc": "event",
        "user": user,
        "item": item,
        "type": etype,
        "ts": "2026-11-28T09:00:00+00:00",
        **extra,
    }


def test_the_default_mapping_maps_events_to_their_own_types() -> None:
    m = Mapper()
    assert m.event_types == {"play", "complete", "dislike"}
    op = m.map_event(event("1", "42", "play"))
    assert isinstance(op, PutEvent)
    assert (op.feedback.feedback_type, op.feedback.user_id, op.feedback.item_id) == ("play", "1", "42")
    assert op.feedback.timestamp is not None and op.feedback.value == 1.0
    for bad in (
        event("1", "42", "teleport"),
        {"type": "play", "item": "1"},
        event("1", "42", "play", value="x"),
    ):
        with pytest.raises(PermanentRecordError):
            m.map_event(bad)


def test_a_mapping_whose_events_use_a_rating_type_is_refused() -> None:
    raw = load_spec().model_dump()
    raw["events"] = {"types": {"play": "like"}}
    with pytest.raises(ValueError, match="tables' own types"):
        MappingSpec.model_validate(raw)


def test_coalescing_keeps_each_event_type_and_a_ratings_feedback_apart() -> None:
    m = Mapper()
    rating = m.map_change(
        "ratings", "insert", {"user_id": 1, "movie_id": 42, "rating": 5, "rated_at": "2026-11-28 09:00:00"}
    )
    ops = [
        *rating,
        m.map_event(event("1", "42", "play")),
        m.map_event(event("1", "42", "complete")),
        m.map_event(event("1", "42", "play", value=2)),
    ]
    plan = coalesce(ops)
    assert plan.put_feedback[("1", "42")].feedback_type == "like"
    assert set(plan.put_events) == {("play", "1", "42"), ("complete", "1", "42")}
    assert plan.put_events[("play", "1", "42")].value == 2.0  # the last one of a key wins
    assert not plan.stale_feedback or all(t in ("unlike",) for t, _, _ in plan.stale_feedback)


def test_a_user_deleted_after_an_event_in_the_same_batch_keeps_no_event() -> None:
    m = Mapper()
    plan = coalesce(
        [m.map_event(event("1", "42", "play")), DeleteUser("1"), m.map_event(event("2", "42", "play"))]
    )
    assert set(plan.put_events) == {("play", "2", "42")}


def test_event_records_are_recognised_and_a_broken_one_is_a_permanent_error() -> None:
    assert decode_event(orjson.dumps(event("1", "2", "play")))["item"] == "2"  # type: ignore[index]
    assert decode_event(b'{"data": {}, "metadata": {}}') is None
    with pytest.raises(PermanentRecordError):
        decode_event(b'{"gorse-cdc":"event", "user": ')
