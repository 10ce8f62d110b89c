"""The changes an OTT platform makes, one function per kind. Each runs its statements in the
caller's transaction and returns what it changed (a Change per row, cascades included), so
tests can compare the captured stream against it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from producers.db import SourceConnection
from producers.synthetic_model import GENRES, OCCUPATIONS, WORDS

LIKE_THRESHOLD = 4  # rating >= 4 is a "like" in the mapping


@dataclass(frozen=True)
class Change:
    """One row change as the database committed it. key: the primary key values; row: the
    full row after an insert/update (None for a delete)."""

    table: str
    op: str  # insert, update, delete
    key: tuple[Any, ...]
    row: dict[str, Any] | None


@dataclass
class World:
    """What the generator knows about the database: live user and movie ids."""

    users: list[int] = field(default_factory=list)
    movies: list[int] = field(default_factory=list)
    next_user: int = 1
    next_movie: int = 1

    @classmethod
    def read(cls, conn: SourceConnection) -> World:
        users = [r[0] for r in conn.execute("SELECT user_id FROM users ORDER BY user_id")]
        movies = [r[0] for r in conn.execute("SELECT movie_id FROM movies ORDER BY movie_id")]
        return cls(users, movies, (max(users) if users else 0) + 1, (max(movies) if movies else 0) + 1)

    @staticmethod
    def remove(ids: list[int], value: int) -> None:
        i = ids.index(value)
        ids[i] = ids[-1]
        ids.pop()


Conn = SourceConnection  # psycopg or producers.db.MySqlConnection: portable SQL only
Event = Callable[[Conn, World, random.Random], list[Change]]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _rating_value(rng: random.Random) -> int:
    return rng.choices([1, 2, 3, 4, 5], weights=[6, 11, 27, 34, 22])[0]


def _user_ratings(conn: Conn, user: int) -> list[tuple[int, int]]:
    rows = conn.execute(
        "SELECT movie_id, rating FROM ratings WHERE user_id = %s ORDER BY movie_id", (user,)
    ).fetchall()
    return [(int(m), int(r)) for m, r in rows]


_KEYS = {"users": ("user_id",), "movies": ("movie_id",), "ratings": ("user_id", "movie_id")}


def _row(conn: Conn, table: str, key: tuple[Any, ...]) -> dict[str, Any] | None:
    """The row as committed (read back: MySQL has no UPDATE ... RETURNING)."""
    where = " AND ".join(f"{c} = %s" for c in _KEYS[table])
    cur = conn.execute(f"SELECT * FROM {table} WHERE {where}", key)
    found = cur.fetchone()
    if found is None:
        return None
    return {d[0]: v for d, v in zip(cur.description, found, strict=True)}


def new_rating(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    if not w.users or not w.movies:
        return new_user(conn, w, rng)
    user = rng.choice(w.users)
    for _ in range(5):
        movie = rng.choice(w.movies)
        if _row(conn, "ratings", (user, movie)) is not None:
            continue
        conn.execute("INSERT INTO ratings VALUES (%s, %s, %s, %s)", (user, movie, _rating_value(rng), _now()))
        return [Change("ratings", "insert", (user, movie), _row(conn, "ratings", (user, movie)))]
    return rerate(conn, w, rng)


def _pick_rating(conn: Conn, w: World, rng: random.Random) -> tuple[int, int, int] | None:
    for _ in range(5):
        if not w.users:
            return None
        user = rng.choice(w.users)
        ratings = _user_ratings(conn, user)
        if ratings:
            movie, rating = rng.choice(ratings)
            return user, movie, rating
    return None


def rerate(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    """Change a rating across the like threshold (a like becomes an unlike or back)."""
    picked = _pick_rating(conn, w, rng)
    if picked is None:
        return new_rating(conn, w, rng) if w.users and w.movies else new_user(conn, w, rng)
    user, movie, old = picked
    new = rng.randint(1, LIKE_THRESHOLD - 1) if old >= LIKE_THRESHOLD else rng.randint(LIKE_THRESHOLD, 5)
    conn.execute(
        "UPDATE ratings SET rating = %s, rated_at = %s WHERE user_id = %s AND movie_id = %s",
        (new, _now(), user, movie),
    )
    return [Change("ratings", "update", (user, movie), _row(conn, "ratings", (user, movie)))]


def delete_rating(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    picked = _pick_rating(conn, w, rng)
    if picked is None:
        return new_user(conn, w, rng)
    user, movie, _ = picked
    conn.execute("DELETE FROM ratings WHERE user_id = %s AND movie_id = %s", (user, movie))
    return [Change("ratings", "delete", (user, movie), None)]


def new_user(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    uid = w.next_user
    w.next_user += 1
    conn.execute(
        "INSERT INTO users VALUES (%s, %s, %s, %s, %s)",
        (uid, rng.randint(13, 75), rng.choice("MF"), rng.choice(OCCUPATIONS), f"{rng.randint(0, 99999):05d}"),
    )
    w.users.append(uid)
    return [Change("users", "insert", (uid,), _row(conn, "users", (uid,)))]


def _genres(rng: random.Random) -> str:
    picked = set(rng.sample(GENRES, rng.choice([1, 1, 2, 2, 3])))
    return "|".join(g for g in GENRES if g in picked)


def new_movie(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    mid = w.next_movie
    w.next_movie += 1
    released = date(rng.randint(1950, 2025), rng.randint(1, 12), rng.randint(1, 28))
    title = f"{' '.join(rng.sample(WORDS, 2))} ({released.year})"
    conn.execute("INSERT INTO movies VALUES (%s, %s, %s, %s)", (mid, title, released, _genres(rng)))
    w.movies.append(mid)
    return [Change("movies", "insert", (mid,), _row(conn, "movies", (mid,)))]


def edit_title(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    if not w.movies:
        return new_movie(conn, w, rng)
    mid = rng.choice(w.movies)
    suffix = rng.choice(["Director's Cut", "Remastered", "Extended", "Édition spéciale", "4K"])
    old = _row(conn, "movies", (mid,))
    assert old is not None
    title = str(old["title"]).split(" [", 1)[0] + f" [{suffix}]"
    conn.execute("UPDATE movies SET title = %s WHERE movie_id = %s", (title, mid))
    return [Change("movies", "update", (mid,), _row(conn, "movies", (mid,)))]


def edit_genres(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    if not w.movies:
        return new_movie(conn, w, rng)
    mid = rng.choice(w.movies)
    conn.execute("UPDATE movies SET genres = %s WHERE movie_id = %s", (_genres(rng), mid))
    return [Change("movies", "update", (mid,), _row(conn, "movies", (mid,)))]


def gdpr_erase(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    """DELETE the user's ratings, then the user, in one transaction. Explicit rather than by the
    FK cascade: a MySQL binlog does not hold cascaded rows (docs/mysql.md)."""
    if not w.users:
        return new_user(conn, w, rng)
    uid = rng.choice(w.users)
    cascade = [Change("ratings", "delete", (uid, m), None) for m, _ in _user_ratings(conn, uid)]
    conn.execute("DELETE FROM ratings WHERE user_id = %s", (uid,))
    conn.execute("DELETE FROM users WHERE user_id = %s", (uid,))
    World.remove(w.users, uid)
    return [Change("users", "delete", (uid,), None), *cascade]


def delete_movie(conn: Conn, w: World, rng: random.Random) -> list[Change]:
    """A title leaves the catalogue with its ratings (deleted explicitly, as in gdpr_erase)."""
    if not w.movies:
        return new_movie(conn, w, rng)
    mid = rng.choice(w.movies)
    raters = conn.execute("SELECT user_id FROM ratings WHERE movie_id = %s ORDER BY user_id", (mid,))
    cascade = [Change("ratings", "delete", (int(u), mid), None) for (u,) in raters.fetchall()]
    conn.execute("DELETE FROM ratings WHERE movie_id = %s", (mid,))
    conn.execute("DELETE FROM movies WHERE movie_id = %s", (mid,))
    World.remove(w.movies, mid)
    return [Change("movies", "delete", (mid,), None), *cascade]


# kind -> (function, default weight in percent)
EVENTS: dict[str, tuple[Event, float]] = {
    "new_rating": (new_rating, 45.0),
    "rerate": (rerate, 20.0),
    "delete_rating": (delete_rating, 8.0),
    "new_user": (new_user, 8.0),
    "new_movie": (new_movie, 3.5),
    "edit_title": (edit_title, 6.0),
    "edit_genres": (edit_genres, 6.0),
    "gdpr_erase": (gdpr_erase, 3.0),
    "delete_movie": (delete_movie, 0.5),
}
