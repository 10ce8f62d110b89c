"""Parsing the MovieLens 100K format (the handmade fixture in tests/fixtures/movielens)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from producers.movielens import (
    MovieLensFormatError,
    parse_date,
    parse_genres,
    parse_items,
    parse_ratings,
    parse_users,
)

FIXTURE = Path(__file__).parents[2] / "fixtures" / "movielens"


def test_genres_in_index_order() -> None:
    genres = parse_genres(FIXTURE / "u.genre")
    assert (
        len(genres) == 19 and genres[0] == "unknown" and genres[4] == "Children's" and genres[-1] == "Western"
    )


def test_items_latin1_dates_and_genres() -> None:
    items = {m.movie_id: m for m in parse_items(FIXTURE / "u.item", parse_genres(FIXTURE / "u.genre"))}
    assert items[1].genres == "Animation|Children's|Comedy"
    assert items[3].title == "Café au lait (1994)" and items[3].release_date == date(1994, 12, 24)
    assert items[4].title == "Misérables, Les (1995)"
    assert items[5].release_date is None and items[5].genres == "unknown"
    assert items[6].genres == "Film-Noir|Sci-Fi"


def test_users_and_ratings() -> None:
    users = list(parse_users(FIXTURE / "u.user"))
    assert users[0] == (1, 24, "M", "technician", "85711") and users[-1][4] == "T8H1N"
    ratings = list(parse_ratings(FIXTURE / "u.data"))
    assert ratings[0] == (1, 1, 5, datetime(1997, 9, 22, 22, 2, 38))


def test_date_format() -> None:
    assert parse_date("01-Jan-1995") == date(1995, 1, 1) and parse_date("") is None


def test_bad_lines_are_errors_not_skips(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t2\t3\n")
    with pytest.raises(MovieLensFormatError, match=r"u\.data line 1"):
        list(parse_ratings(tmp_path / "u.data"))
    (tmp_path / "u.data").write_text("1\t2\t9\t881250949\n")
    with pytest.raises(MovieLensFormatError, match="rating 9"):
        list(parse_ratings(tmp_path / "u.data"))
    (tmp_path / "u.item").write_bytes(b"1|x|bad-date||url|" + b"|".join([b"0"] * 19) + b"\n")
    with pytest.raises(MovieLensFormatError, match=r"u\.item line 1"):
        list(parse_items(tmp_path / "u.item", parse_genres(FIXTURE / "u.genre")))
