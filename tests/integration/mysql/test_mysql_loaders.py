"""The loaders on the MariaDB source: the handmade MovieLens 100K fixture (latin-1 titles, empty
dates), the generator and live activity, through the same commands as on PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.db import connect, table_counts
from producers.movielens import load_movielens
from producers.synthetic import GeneratorConfig, generate

FIXTURE = Path(__file__).parents[2] / "fixtures" / "movielens"


def test_load_movielens_fixture(my: Settings) -> None:
    assert load_movielens(my, FIXTURE, truncate=True) == {"users": 9, "movies": 6, "ratings": 13}
    with connect(my) as c:
        movies = {r[0]: r[1:] for r in c.execute("SELECT movie_id, title, release_date, genres FROM movies")}
        assert movies[1] == ("Toy Story (1995)", date(1995, 1, 1), "Animation|Children's|Comedy")
        assert movies[3] == ("Café au lait (1994)", date(1994, 12, 24), "Comedy")
        assert movies[5] == ("unknown", None, "unknown")
        assert c.execute("SELECT * FROM users WHERE user_id = 9").fetchone() == (
            9,
            31,
            "M",
            "marketing",
            "T8H1N",
        )
        row = c.execute("SELECT rating, rated_at FROM ratings WHERE user_id = 1 AND movie_id = 1").fetchone()
        assert row == (5, datetime(1997, 9, 22, 22, 2, 38))


def test_generate_then_activity(my: Settings) -> None:
    g = generate(my, GeneratorConfig(users=50, movies=40, ratings=700, seed=3), truncate=True)
    with connect(my) as c:
        assert table_counts(c) == {"users": 50, "movies": 40, "ratings": g.ratings}
    a = run_activity(my, changes=300, seed=4, record=True)
    assert a.events == 300 and a.journal is not None
    with connect(my) as c:  # the journal's last word on each key is the database's
        for ch in a.journal:
            if ch.table != "users":
                continue
            row = c.execute("SELECT * FROM users WHERE user_id = %s", ch.key).fetchone()
            last = [x for x in a.journal if x.table == "users" and x.key == ch.key][-1]
            assert (row is None) == (last.op == "delete")
        orphans = c.execute(
            "SELECT count(*) FROM ratings r LEFT JOIN users u ON u.user_id = r.user_id"
            " WHERE u.user_id IS NULL"
        ).fetchone()
        assert orphans == (0,)
