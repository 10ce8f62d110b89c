"""A synthetic MovieLens-shaped world, deterministic by seed. Pure (numpy), no I/O.

- movies: 1-3 genres each (skewed: Drama and Comedy common, Film-Noir rare), release dates
  skewed to recent years, a hidden quality; popularity Zipf (s=1) over a random order.
- users: age, gender, occupation, zip like ML-100K; ratings per user log-normal (few heavy
  raters, many light ones), summing EXACTLY to the requested total; a hidden taste: a sparse
  Dirichlet affinity over genres, plus a personal bias.
- ratings: distinct movies per user drawn by popularity; value = round(3.3 + quality + bias +
  taste(user affinity . movie genres) + noise) clipped to 1..5, so a recommender has structure
  to learn; rating time between the user's signup (and the release) and the end date.
Memory is O(users + movies + one chunk of ratings), never O(ratings).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
)  # fmt: skip
GENRE_WEIGHTS = np.array([25, 13, 4, 12, 50, 11, 5, 72, 2, 2, 9, 6, 6, 25, 10, 25, 7, 3], dtype=float)
OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
WORDS = (
    "Night", "Love", "Story", "Dark", "City", "Last", "Man", "Woman", "Return", "Secret", "Life",
    "World", "Blue", "Star", "Heart", "War", "Dream", "River", "King", "Shadow", "Summer", "Ghost",
    "Game", "Lost", "Road", "Fire", "House", "Island", "Song", "Day",
)  # fmt: skip
EPOCH_2000 = date(2000, 1, 1)
US = 1_000_000
DAY_US = 86_400 * US
START_US = (date(1996, 1, 1) - EPOCH_2000).days * DAY_US  # first signup
END_US = (date(2025, 1, 1) - EPOCH_2000).days * DAY_US  # last rating


class GeneratorError(ValueError):
    pass


@dataclass(frozen=True)
class GeneratorConfig:
    users: int
    movies: int
    ratings: int
    seed: int = 1
    first_id: int = 1

    def check(self) -> None:
        if self.users < 1 or self.movies < 1 or self.ratings < 0:
            raise GeneratorError("users and movies must be >= 1, ratings >= 0")
        if self.ratings > self.users * self.movies:
            raise GeneratorError(
                f"{self.ratings} ratings do not fit {self.users} users x {self.movies} movies"
            )


@dataclass
class RatingChunk:
    user_ids: npt.NDArray[np.int64]
    movie_ids: npt.NDArray[np.int64]
    ratings: npt.NDArray[np.int16]
    rated_at_us: npt.NDArray[np.int64]  # microseconds since 2000-01-01 UTC (PostgreSQL's epoch)


class World:
    """The hidden structure; users, movies and rating chunks are generated from it."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        cfg.check()
        self.cfg = cfg
        seeds = np.random.SeedSequence(cfg.seed).spawn(4)
        rm, ru, self._rr_seed, rc = (np.random.default_rng(s) for s in seeds)
        m, u = cfg.movies, cfg.users
        # movies
        gp = GENRE_WEIGHTS / GENRE_WEIGHTS.sum()
        self.movie_genres = np.zeros((m, len(GENRES)), dtype=np.float32)
        n_genres = rm.choice([1, 2, 3], size=m, p=[0.5, 0.35, 0.15])
        for i in range(m):
            self.movie_genres[i, rm.choice(len(GENRES), size=n_genres[i], replace=False, p=gp)] = 1.0
        years = np.clip(2024 - np.floor(rm.exponential(12.0, size=m)), 1920, 2024).astype(np.int64)
        self.release_days = np.array(
            [(date(int(y), 1, 1) - EPOCH_2000).days for y in years], dtype=np.int64
        ) + rm.integers(0, 365, size=m)
        self.quality = rm.normal(0.0, 0.5, size=m).astype(np.float32)
        rank = rm.permutation(m)
        self.popularity = 1.0 / (rank + 1.0)
        self.popularity /= self.popularity.sum()
        self._cdf = np.cumsum(self.popularity)
        self._title_words = rm.integers(0, len(WORDS), size=(m, 3))
        self._title_len = rm.integers(1, 4, size=m)
        # users
        self.affinity = ru.dirichlet(np.full(len(GENRES), 0.3), size=u).astype(np.float32)
        self.bias = ru.normal(0.0, 0.4, size=u).astype(np.float32)
        self.age = np.clip(ru.normal(33, 12, size=u), 7, 80).astype(np.int64)
        self.gender = ru.random(u) < 0.71
        self.occupation = ru.integers(0, len(OCCUPATIONS), size=u)
        self.zip = ru.integers(0, 100_000, size=u)
        self.signup_us = ru.integers(START_US, END_US - DAY_US, size=u)
        self.counts = plan_counts(rc, u, m, cfg.ratings)

    # ---- rows ------------------------------------------------------------------------------
    def user_rows(self) -> Iterator[tuple[int, int, str, str, str]]:
        for i in range(self.cfg.users):
            yield (
                self.cfg.first_id + i,
                int(self.age[i]),
                "M" if self.gender[i] else "F",
                OCCUPATIONS[int(self.occupation[i])],
                f"{int(self.zip[i]):05d}",
            )

    def movie_rows(self) -> Iterator[tuple[int, str, date, str]]:
        for i in range(self.cfg.movies):
            words = " ".join(WORDS[int(w)] for w in self._title_words[i, : self._title_len[i]])
            released = date.fromordinal(EPOCH_2000.toordinal() + int(self.release_days[i]))
            genres = "|".join(g for g, f in zip(GENRES, self.movie_genres[i], strict=True) if f)
            yield self.cfg.first_id + i, f"{words} {i + 1} ({released.year})", released, genres

    def rating_chunks(self, max_rows: int = 500_000) -> Iterator[RatingChunk]:
        """Every rating, by user, in chunks of about max_rows (deterministic by seed)."""
        rng = np.random.default_rng(self._rr_seed.integers(0, 2**63))
        u0 = 0
        while u0 < self.cfg.users:
            u1, total = u0, 0
            while u1 < self.cfg.users and (u1 == u0 or total + self.counts[u1] <= max_rows):
                total += int(self.counts[u1])
                u1 += 1
            if total:
                yield self._chunk(rng, u0, u1)
            u0 = u1

    def _chunk(self, rng: np.random.Generator, u0: int, u1: int) -> RatingChunk:
        users = np.arange(u0, u1)
        movies = [self._pick(rng, int(self.counts[u])) for u in users]
        n = self.counts[u0:u1]
        uidx = np.repeat(users, n)
        midx = np.concatenate(movies) if movies else np.zeros(0, dtype=np.int64)
        taste = (self.affinity[uidx] * self.movie_genres[midx]).sum(axis=1)
        per_genre = self.movie_genres[midx].sum(axis=1)
        taste = 6.0 * (taste / np.maximum(per_genre, 1.0) - 1.0 / len(GENRES))
        score = 3.3 + self.quality[midx] + self.bias[uidx] + taste + rng.normal(0, 0.7, size=len(uidx))
        ratings = np.clip(np.rint(score), 1, 5).astype(np.int16)
        lo = np.maximum(self.signup_us[uidx], self.release_days[midx] * DAY_US)
        lo = np.minimum(lo, END_US - US)
        when = lo + (rng.random(len(uidx)) * (END_US - lo)).astype(np.int64)
        first = self.cfg.first_id
        return RatingChunk(uidx + first, midx + first, ratings, when)

    def _pick(self, rng: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        """k distinct movies, by popularity."""
        m = self.cfg.movies
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        if k * 4 > m:  # Gumbel top-k: exact sampling without replacement in O(m)
            keys = np.log(self.popularity) + rng.gumbel(size=m)
            return np.argpartition(-keys, k - 1)[:k].astype(np.int64)
        chosen: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        while len(chosen) < k:
            draw = np.searchsorted(self._cdf, rng.random(2 * (k - len(chosen)) + 4) * self._cdf[-1])
            draw = np.minimum(draw, m - 1)
            merged = np.concatenate([chosen, draw])
            _, first = np.unique(merged, return_index=True)
            chosen = merged[np.sort(first)][:k]
        return chosen


def plan_counts(rng: np.random.Generator, users: int, movies: int, ratings: int) -> npt.NDArray[np.int64]:
    """Ratings per user: log-normal weights (heavy and light raters), capped at the number of
    movies, summing exactly to ``ratings``."""
    w = rng.lognormal(0.0, 1.1, size=users)
    n = np.minimum(np.floor(ratings * w / w.sum()), movies).astype(np.int64)
    while (deficit := ratings - int(n.sum())) > 0:
        room = movies - n
        weight = np.where(room > 0, w, 0.0)
        share = np.minimum(np.floor(deficit * weight / weight.sum()).astype(np.int64), room)
        if share.sum() == 0:
            order = np.argsort(-weight, kind="stable")[:deficit]
            share = np.zeros_like(n)
            share[order] = 1
            share = np.minimum(share, room)
        n += share
    counts: npt.NDArray[np.int64] = n.astype(np.int64)
    return counts
