"""The handmade MovieLens 100K fixture loads with the right rows, genres, dates, encodings."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import psycopg

from gorse_cdc.settings import Settings
from producers.cli import register  # noqa: F401  (the command exists)
from producers.movielens import load_movielens

FIXTURE = Path(__file__).parents[2] / "fixtures" / "movielens"


def test_load_fixture(settings: Settings, stack: object) -> None:
    counts = load_movielens(settings, FIXTURE, truncate=True)
    assert counts == {"users": 9, "movies": 6, "ratings": 13}
    with psycopg.connect(settings.source_dsn) as c:
        movies = {r[0]: r[1:] for r in c.execute("SELECT movie_id, title, release_date, genres FROM movies")}
        assert movies[1] == ("Toy Story (1995)", date(1995, 1, 1), "Animation|Children's|Comedy")
        assert movies[3] == ("Café au lait (1994)", date(1994, 12, 24), "Comedy")
        assert movies[4][0] == "Misérables, Les (1995)"
        assert movies[5] == ("unknown", None, "unknown")
        assert c.execute("SELECT * FROM users WHERE user_id = 9").fetchone() == (
            9,
            31,
            "M",
            "marketing",
            "T8H1N",
        )
        assert c.execute(
            "SELECT rating, rated_at FROM ratings WHERE user_id = 1 AND movie_id = 1"
        ).fetchone() == (
            5,
            datetime(1997, 9, 22, 22, 2, 38),
        )


def test_load_movielens_cli(settings: Settings, stack: object) -> None:
    from entrypoints.cli import main

    assert main(["data", "load-movielens", str(FIXTURE), "--truncate"]) == 0
