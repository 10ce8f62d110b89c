"""The real MovieLens 100K files -> users, movies, ratings (parsing is pure; loading uses COPY).

u.user  ``user id | age | gender | occupation | zip code``
u.item  latin-1: ``movie id | movie title | release date | video release date | IMDb URL |``
        then 19 genre flags, in u.genre's order; release dates like 01-Jan-1995, some empty
u.genre ``name|index`` lines
u.data  tab-separated ``user id, item id, rating, timestamp`` (unix seconds, UTC)
Malformed lines raise MovieLensFormatError naming the file and line: never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from gorse_cdc.errors import GorseCdcError
from gorse_cdc.settings import Settings
from producers.db import bulk_insert, connect, truncate_all

ENCODING = "latin-1"


class MovieLensFormatError(GorseCdcError, ValueError):
    pass


@dataclass(frozen=True)
class MovieRow:
    movie_id: int
    title: str
    release_date: date | None
    genres: str  # pipe-separated, in u.genre order


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding=ENCODING, newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield n, line


def _fail(path: Path, n: int, why: str) -> MovieLensFormatError:
    return MovieLensFormatError(f"{path.name} line {n}: {why}")


def parse_genres(path: Path) -> list[str]:
    """u.genre -> genre names by index."""
    by_index: dict[int, str] = {}
    for n, line in _lines(path):
        name, sep, idx = line.rpartition("|")
        if not sep or not idx.isdigit():
            raise _fail(path, n, f"expected 'name|index', got {line!r}")
        by_index[int(idx)] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise MovieLensFormatError(f"{path.name}: genre indexes are not 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def parse_date(text: str) -> date | None:
    """'01-Jan-1995' -> date; '' -> None."""
    text = text.strip()
    return datetime.strptime(text, "%d-%b-%Y").date() if text else None


def parse_users(path: Path) -> Iterator[tuple[int, int, str, str, str]]:
    for n, line in _lines(path):
        f = line.split("|")
        if len(f) != 5:
            raise _fail(path, n, f"expected 5 fields, got {len(f)}")
        try:
            yield int(f[0]), int(f[1]), f[2], f[3], f[4]
        except ValueError as e:
            raise _fail(path, n, str(e)) from None


def parse_items(path: Path, genres: list[str]) -> Iterator[MovieRow]:
    for n, line in _lines(path):
        f = line.split("|")
        if len(f) != 5 + len(genres):
            raise _fail(path, n, f"expected {5 + len(genres)} fields, got {len(f)}")
        flags = f[5:]
        if any(x not in ("0", "1") for x in flags):
            raise _fail(path, n, f"genre flags must be 0 or 1: {flags}")
        try:
            released = parse_date(f[2])
            yield MovieRow(
                int(f[0]), f[1], released, "|".join(g for g, x in zip(genres, flags, strict=True) if x == "1")
            )
        except ValueError as e:
            raise _fail(path, n, str(e)) from None


def parse_ratings(path: Path) -> Iterator[tuple[int, int, int, datetime]]:
    for n, line in _lines(path):
        f = line.split("\t")
        if len(f) != 4:
            raise _fail(path, n, f"expected 4 tab-separated fields, got {len(f)}")
        try:
            rating = int(f[2])
            if not 1 <= rating <= 5:
                raise ValueError(f"rating {rating} not in 1..5")
            when = datetime.fromtimestamp(int(f[3]), UTC).replace(tzinfo=None)
            yield int(f[0]), int(f[1]), rating, when
        except ValueError as e:
            raise _fail(path, n, str(e)) from None


def load_movielens(settings: Settings, directory: Path, *, truncate: bool = False) -> dict[str, int]:
    """Load a MovieLens 100K folder (COPY, or INSERTs on MySQL) in one transaction. Returns rows per table."""
    d = Path(directory)
    for name in ("u.user", "u.item", "u.genre", "u.data"):
        if not (d / name).is_file():
            raise MovieLensFormatError(f"{d}: no {name} (is this a MovieLens 100K folder?)")
    genres = parse_genres(d / "u.genre")
    counts = {"users": 0, "movies": 0, "ratings": 0}
    with connect(settings) as conn:
        if truncate:
            truncate_all(conn)
        counts["users"] = bulk_insert(
            conn, "users", ("user_id", "age", "gender", "occupation", "zip"), parse_users(d / "u.user")
        )
        counts["movies"] = bulk_insert(
            conn,
            "movies",
            ("movie_id", "title", "release_date", "genres"),
            ((m.movie_id, m.title, m.release_date, m.genres) for m in parse_items(d / "u.item", genres)),
        )
        counts["ratings"] = bulk_insert(
            conn, "ratings", ("user_id", "movie_id", "rating", "rated_at"), parse_ratings(d / "u.data")
        )
    return counts
