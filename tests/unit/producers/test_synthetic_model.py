"""The synthetic world: deterministic, exact sizes, distinct pairs, skew, learnable taste."""

from __future__ import annotations

import numpy as np
import pytest

from producers.synthetic import ratings_copy_binary
from producers.synthetic_model import GeneratorConfig, GeneratorError, World, plan_counts


def _all(world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    chunks = list(world.rating_chunks(max_rows=3000))
    return tuple(
        np.concatenate([getattr(c, f) for c in chunks])
        for f in ("user_ids", "movie_ids", "ratings", "rated_at_us")
    )  # type: ignore[return-value]


def test_deterministic_by_seed() -> None:
    cfg = GeneratorConfig(300, 120, 9000, seed=5)
    a, b = World(cfg), World(cfg)
    assert list(a.user_rows()) == list(b.user_rows()) and list(a.movie_rows()) == list(b.movie_rows())
    for x, y in zip(_all(a), _all(b), strict=True):
        assert np.array_equal(x, y)
    c = World(GeneratorConfig(300, 120, 9000, seed=6))
    assert not np.array_equal(_all(a)[1], _all(c)[1])


def test_exact_count_distinct_pairs_and_ranges() -> None:
    cfg = GeneratorConfig(400, 150, 20_000, seed=1, first_id=1000)
    u, m, r, _ = _all(World(cfg))
    assert len(u) == 20_000
    assert len(set(zip(u.tolist(), m.tolist(), strict=True))) == 20_000
    assert u.min() >= 1000 and u.max() < 1400 and m.min() >= 1000 and m.max() < 1150
    assert set(np.unique(r).tolist()) <= {1, 2, 3, 4, 5}


def test_counts_heavy_and_light_raters_sum_exactly() -> None:
    n = plan_counts(np.random.default_rng(0), 1000, 50, 30_000)
    assert n.sum() == 30_000 and n.max() <= 50
    n2 = plan_counts(np.random.default_rng(0), 5000, 2000, 100_000)
    assert n2.sum() == 100_000
    assert np.percentile(n2, 95) > 4 * np.percentile(n2, 50)  # a heavy tail


def test_popularity_is_skewed() -> None:
    _, m, _, _ = _all(World(GeneratorConfig(1000, 500, 30_000, seed=2)))
    counts = np.sort(np.bincount(m))[::-1]
    assert counts[:25].sum() > 0.25 * counts.sum()  # top 5% of movies draw > 25% of ratings


def test_ratings_follow_hidden_taste() -> None:
    w = World(GeneratorConfig(800, 300, 40_000, seed=3))
    u, m, r, _ = _all(w)
    taste = (w.affinity[u - 1] * w.movie_genres[m - 1]).sum(axis=1)
    assert np.corrcoef(taste, r)[0, 1] > 0.2


def test_rated_after_release() -> None:
    w = World(GeneratorConfig(200, 100, 5000, seed=4))
    _, m, _, t = _all(w)
    assert (t >= w.release_days[m - 1] * 86_400 * 1_000_000).all()


def test_too_many_ratings_refused() -> None:
    with pytest.raises(GeneratorError):
        World(GeneratorConfig(2, 2, 5))


def test_binary_copy_layout() -> None:
    chunk = next(World(GeneratorConfig(3, 3, 2, seed=1)).rating_chunks())
    data = ratings_copy_binary(chunk)
    assert len(data) == 2 * (2 + 4 + 8 + 4 + 8 + 4 + 2 + 4 + 8)
    assert data[:2] == b"\x00\x04" and data[2:6] == b"\x00\x00\x00\x08"
