"""`gorse-cdc data generate`: stream a synthetic world (synthetic_model) into the source.

Users and movies go through text COPY in one transaction; ratings through binary COPY built
with numpy (no per-row Python work), committed per chunk, so memory stays bounded for 100M
ratings. Ratings are loaded after users and movies (the foreign keys need them). A MySQL
source takes multi-row INSERTs instead of COPY (producers.db.bulk_insert).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from gorse_cdc.settings import Settings
from producers.db import bulk_insert, connect, is_mysql, truncate_all
from producers.synthetic_model import GeneratorConfig, RatingChunk, World

log = logging.getLogger(__name__)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
_RATING_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l1", ">i4"), ("user", ">i8"),
        ("l2", ">i4"), ("movie", ">i8"),
        ("l3", ">i4"), ("rating", ">i2"),
        ("l4", ">i4"), ("at", ">i8"),
    ]
)  # fmt: skip

__all__ = ["GenerateSummary", "GeneratorConfig", "generate", "ratings_copy_binary"]


@dataclass
class GenerateSummary:
    users: int
    movies: int
    ratings: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return (self.users + self.movies + self.ratings) / max(self.seconds, 1e-9)

    def describe(self) -> str:
        return (
            f"generated {self.users} users, {self.movies} movies, {self.ratings} ratings in "
            f"{self.seconds:.1f} s ({self.rows_per_s:,.0f} rows/s)"
        )


PG_EPOCH = datetime(2000, 1, 1)


def rating_rows(chunk: RatingChunk) -> Iterator[tuple[int, int, int, datetime]]:
    """One chunk as plain rows (the MySQL path: INSERTs), rated_at naive UTC."""
    for u, m, r, at in zip(
        chunk.user_ids.tolist(),
        chunk.movie_ids.tolist(),
        chunk.ratings.tolist(),
        chunk.rated_at_us.tolist(),
        strict=True,
    ):
        yield u, m, r, PG_EPOCH + timedelta(microseconds=at)


def ratings_copy_binary(chunk: RatingChunk) -> bytes:
    """One chunk as PostgreSQL binary COPY tuples (user_id, movie_id, rating, rated_at)."""
    rows = np.empty(len(chunk.user_ids), dtype=_RATING_ROW)
    rows["n"] = 4
    rows["l1"], rows["l2"], rows["l3"], rows["l4"] = 8, 8, 2, 8
    rows["user"] = chunk.user_ids
    rows["movie"] = chunk.movie_ids
    rows["rating"] = chunk.ratings
    rows["at"] = chunk.rated_at_us
    return rows.tobytes()


def generate(
    settings: Settings, cfg: GeneratorConfig, *, truncate: bool = False, progress: bool = False
) -> GenerateSummary:
    """Insert the world for ``cfg`` (ids from cfg.first_id). Deterministic by cfg.seed."""
    started = time.monotonic()
    world = World(cfg)
    with connect(settings) as conn:
        if truncate:
            truncate_all(conn)
        bulk_insert(conn, "users", ("user_id", "age", "gender", "occupation", "zip"), world.user_rows())
        bulk_insert(conn, "movies", ("movie_id", "title", "release_date", "genres"), world.movie_rows())
        conn.commit()
        done = 0
        last_log = time.monotonic()
        for chunk in world.rating_chunks():
            if is_mysql(conn):
                bulk_insert(
                    conn, "ratings", ("user_id", "movie_id", "rating", "rated_at"), rating_rows(chunk)
                )
            else:
                with conn.cursor() as cur:
                    copy_sql = "COPY ratings (user_id, movie_id, rating, rated_at) FROM STDIN (FORMAT BINARY)"
                    with cur.copy(copy_sql) as cp:
                        cp.write(COPY_HEADER + ratings_copy_binary(chunk) + COPY_TRAILER)
            conn.commit()
            done += len(chunk.user_ids)
            if progress and time.monotonic() - last_log > 5:
                last_log = time.monotonic()
                log.info("generate: %d / %d ratings", done, cfg.ratings)
    return GenerateSummary(cfg.users, cfg.movies, done, time.monotonic() - started)
