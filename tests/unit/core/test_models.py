from __future__ import annotations

import pytest

from gorse_cdc.errors import InvalidEntityError
from gorse_cdc.gorse import Feedback, GorseClient, Item, User, validate_labels


@pytest.mark.parametrize("bad", ["", "a/b", "/", "x/"])
def test_bad_ids_refused(bad: str) -> None:
    with pytest.raises(InvalidEntityError, match="UserId"):
        User(bad)
    with pytest.raises(InvalidEntityError, match="ItemId"):
        Item(bad)
    with pytest.raises(InvalidEntityError):
        Feedback("like", bad, "i")


@pytest.mark.parametrize(
    "labels",
    [True, [True], [1, "a"], [[1]], [{"a": 1}], {"a": False}, {"a": [1, "b"]}, {"a": None}, {1: "x"}, [None]],
)
def test_labels_gorse_rejects_are_refused(labels: object) -> None:
    with pytest.raises(InvalidEntityError, match="Gorse rejects"):
        validate_labels(labels)
    with pytest.raises(InvalidEntityError):
        User("u", labels)


@pytest.mark.parametrize(
    "labels",
    [None, "a", 1, 2.5, [], ["a", "b"], [1, 2.5], {"a": {"b": ["c"]}, "n": 3}, {"age": 24, "genres": ["x"]}],
)
def test_labels_gorse_accepts(labels: object) -> None:
    assert User("u", labels).labels == labels


async def test_client_refuses_bad_id_before_any_request() -> None:
    # port 9 (discard) on loopback: if a request were sent we would get a retriable error
    async with GorseClient("http://127.0.0.1:9", "k") as c:
        with pytest.raises(InvalidEntityError):
            await c.delete_user("a/b")
        with pytest.raises(InvalidEntityError):
            await c.delete_feedback("u", "")


def test_client_repr_hides_key() -> None:
    c = GorseClient("http://x", "super-secret")
    assert "super-secret" not in repr(c)


def test_json_round_trip() -> None:
    from datetime import UTC, datetime

    i = Item("m1", {"genres": ["A"]}, ("A",), datetime(1995, 1, 1, tzinfo=UTC), "Toy Story")
    assert Item.from_json(i.to_json()) == i
    f = Feedback("like", "u", "m", 4.0, datetime(2024, 1, 1, 12, tzinfo=UTC))
    assert Feedback.from_json(f.to_json()) == f
