from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gorse_cdc.errors import PermanentRecordError
from gorse_cdc.mapping import (
    DeleteFeedback,
    DeleteUser,
    Mapper,
    PutFeedback,
    UpsertItem,
    UpsertUser,
    diff_states,
    expected_state,
)
from gorse_cdc.mapping.spec import MappingSpec

M = Mapper()
RATING = {"user_id": 7, "movie_id": 42, "rating": 4, "rated_at": "2024-05-01 10:00:00"}


@given(st.integers(1, 5))
def test_rating_type_threshold(rating: int) -> None:
    (op,) = M.map_change("ratings", "insert", {**RATING, "rating": rating})
    assert isinstance(op, PutFeedback)
    expected = "like" if rating >= 4 else "unlike"
    assert op.feedback.feedback_type == expected
    assert op.stale_types == (("unlike",) if expected == "like" else ("like",))
    assert op.feedback.value == float(rating)


def test_rating_csv_strings_map_like_json() -> None:
    csv_row = {k: str(v) for k, v in RATING.items()}
    assert M.map_change("ratings", "I", csv_row, csv=True) == M.map_change("ratings", "insert", RATING)


def test_rating_delete_deletes_all_types() -> None:
    ops = M.map_change("ratings", "delete", {"user_id": 7, "movie_id": 42, "rating": None, "rated_at": None})
    assert ops == [DeleteFeedback("7", "42")]


def test_key_change_update_deletes_old_key_first() -> None:
    ops = M.map_change(
        "ratings", "update", {**RATING, "movie_id": 43}, before_image={"user_id": 7, "movie_id": 42}
    )
    assert isinstance(ops[0], DeleteFeedback) and ops[0].item_id == "42"
    assert isinstance(ops[1], PutFeedback) and ops[1].feedback.item_id == "43"
    # PostgreSQL's empty before-image (key unchanged): no delete
    assert len(M.map_change("ratings", "update", RATING, before_image={})) == 1


def test_movie_to_item() -> None:
    (op,) = M.map_change(
        "movies",
        "load",
        {
            "movie_id": 1,
            "title": "Toy Story (1995)",
            "release_date": "1995-01-01",
            "genres": "Animation|Children's|Comedy",
        },
    )
    assert isinstance(op, UpsertItem)
    assert op.item.item_id == "1"
    assert op.item.comment == "Toy Story (1995)"
    assert op.item.categories == ("Animation", "Children's", "Comedy")
    assert op.item.labels == {"genres": ["Animation", "Children's", "Comedy"], "year": 1995}
    assert op.item.timestamp == datetime(1995, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("privacy", "zip_label"), [("keep", "85711"), ("prefix3", "857"), ("drop", None)])
def test_user_zip_privacy(privacy: str, zip_label: str | None) -> None:
    m = Mapper(zip_privacy=privacy)  # type: ignore[arg-type]
    (op,) = m.map_change(
        "users",
        "insert",
        {"user_id": 1, "age": 24, "gender": "M", "occupation": "technician", "zip": "85711"},
    )
    assert isinstance(op, UpsertUser)
    assert op.user.labels.get("zip") == zip_label
    assert op.user.labels["age"] == 24


def test_user_delete() -> None:
    assert M.map_change("users", "delete", {"user_id": 5}) == [DeleteUser("5")]


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("nope", {"user_id": 1}),
        ("ratings", {"user_id": None, "movie_id": 1, "rating": 3, "rated_at": "2024-01-01"}),
        ("ratings", {"user_id": 1, "movie_id": 1, "rating": "many", "rated_at": "2024-01-01"}),
        ("ratings", {"user_id": 1, "movie_id": 1, "rating": 3, "rated_at": "not a time"}),
        ("users", {"user_id": "a/b", "age": 1}),
    ],
)
def test_bad_rows_are_permanent_errors(table: str, row: dict[str, object]) -> None:
    with pytest.raises(PermanentRecordError):
        M.map_change(table, "insert", row)


def test_expected_state_liked_labels_and_diff() -> None:
    rows = {
        "users": [{"user_id": 1, "age": 30, "gender": "F", "occupation": "writer", "zip": "10001"}],
        "movies": [
            {"movie_id": 1, "title": "A", "release_date": "2000-01-01", "genres": "Drama|Comedy"},
            {"movie_id": 2, "title": "B", "release_date": "2001-01-01", "genres": "Horror"},
            {"movie_id": 3, "title": "C", "release_date": "2002-01-01", "genres": "Action|Drama"},
        ],
        "ratings": [
            {"user_id": 1, "movie_id": 1, "rating": 5, "rated_at": "2024-01-01 00:00:00"},
            {"user_id": 1, "movie_id": 2, "rating": 2, "rated_at": "2024-01-01 00:00:00"},
            {"user_id": 1, "movie_id": 3, "rating": 4, "rated_at": "2024-01-01 00:00:00"},
        ],
    }
    exp = expected_state(M, rows)
    assert exp.users["1"].labels["liked_genres"] == ["Action", "Comedy", "Drama"]
    assert {k[0] for k in exp.feedback} == {"like", "unlike"}
    assert diff_states(exp, exp).total == 0

    actual = expected_state(M, rows)
    del actual.users["1"]
    fb = actual.feedback.pop(("like", "1", "3"))
    actual.feedback[("unlike", "1", "3")] = fb  # wrong type
    drift = diff_states(exp, actual)
    assert drift.users.missing == ["1"]
    assert drift.feedback.missing == [("like", "1", "3")]
    assert drift.feedback.extra == [("unlike", "1", "3")]


def test_spec_rejects_undeclared_columns() -> None:
    with pytest.raises(ValueError, match="not declared"):
        MappingSpec.model_validate(
            {
                "feedback_types": ["like"],
                "tables": {
                    "u": {
                        "entity": "user",
                        "key": ["id"],
                        "partition_key": "id",
                        "columns": {"id": "str"},
                        "user": {"id": "id", "labels": [{"name": "x", "column": "missing"}]},
                    }
                },
            }
        )
