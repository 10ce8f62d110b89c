"""The quality bench's pure parts: the per-user time split and the top-k metrics."""

from __future__ import annotations

import math

import pytest

from bench.quality_metrics import (
    Rating,
    evaluate,
    held_out_count,
    ndcg_at_k,
    next_like_probes,
    precision_at_k,
    recall_at_k,
    rolling_rate,
    time_split,
    top_unseen,
)


def test_precision_divides_by_k_even_for_a_short_list() -> None:
    assert precision_at_k([1, 2, 3], {1, 3}, k=10) == pytest.approx(0.2)
    assert precision_at_k([1, 2, 3, 4], {4}, k=3) == 0.0  # beyond k does not count


def test_recall_divides_by_the_relevant_items() -> None:
    assert recall_at_k([1, 2, 3], {1, 9, 8, 7}, k=10) == pytest.approx(0.25)
    assert recall_at_k([1], set(), k=10) == 0.0


def test_ndcg_is_one_for_a_perfect_list_and_discounts_by_rank() -> None:
    assert ndcg_at_k([1, 2, 5], {1, 2}, k=10) == pytest.approx(1.0)
    # one hit at rank 2 of one relevant item: 1/log2(3)
    assert ndcg_at_k([9, 1], {1}, k=10) == pytest.approx(1 / math.log2(3))
    # the ideal list holds min(k, relevant) hits
    assert ndcg_at_k([1, 9], {1, 2, 3}, k=2) == pytest.approx(1.0 / (1.0 + 1 / math.log2(3)))
    assert ndcg_at_k([], {1}, k=10) == 0.0


def test_held_out_count() -> None:
    assert held_out_count(1, 0.1) == 0  # the only rating stays in training
    assert held_out_count(2, 0.1) == 1
    assert held_out_count(20, 0.1) == 2
    assert held_out_count(25, 0.1) == 2  # round half to even
    assert held_out_count(3, 0.9) == 2  # never all


def test_time_split_holds_out_each_users_latest_ratings() -> None:
    rows = [Rating(1, m, 5, float(t)) for m, t in [(10, 5), (11, 1), (12, 9), (13, 3)] * 1]
    rows += [Rating(2, 20 + i, 3, float(100 - i)) for i in range(20)]  # rated in reverse id order
    rows += [Rating(3, 30, 4, 1.0)]
    split = time_split(rows, 0.25)
    test = {(r.user, r.movie) for r in split.test}
    assert (1, 12) in test and len([r for r in split.test if r.user == 1]) == 1
    assert {m for u, m in test if u == 2} == {20, 21, 22, 23, 24}  # the 5 latest of 20
    assert all(r.user != 3 for r in split.test)
    assert len(split.train) + len(split.test) == len(rows)
    # every training rating of a user is no later than their held-out ones
    for u in (1, 2):
        assert max(r.at for r in split.train if r.user == u) <= min(r.at for r in split.test if r.user == u)


def test_time_split_breaks_ties_by_movie_and_rejects_bad_fractions() -> None:
    rows = [Rating(1, m, 4, 0.0) for m in (5, 3, 4, 1, 2)]
    assert [r.movie for r in time_split(rows, 0.2).test] == [5]
    with pytest.raises(ValueError):
        time_split(rows, 1.0)


def test_relevant_and_seen() -> None:
    split = time_split([Rating(1, m, r, float(m)) for m, r in [(1, 5), (2, 2), (3, 4), (4, 2)]], 0.5)
    assert split.relevant() == {1: {3}}
    assert split.seen() == {1: {1, 2}}


def test_evaluate_counts_a_missing_list_as_empty() -> None:
    relevant = {1: {10}, 2: {20}, 3: set()}
    s = evaluate({1: [10, 11]}, relevant, k=10)
    assert s.users == 2 and s.empty == 1
    assert s.precision == pytest.approx(0.05)
    assert s.recall == pytest.approx(0.5)
    assert s.ndcg == pytest.approx(0.5)


def test_top_unseen_skips_seen_items_and_duplicates() -> None:
    assert top_unseen([1, 2, 2, 3, 4, 5], {1, 3}, k=3) == [2, 4, 5]


def test_next_like_probes_pair_each_like_with_the_following_one() -> None:
    test = [Rating(1, 7, 5, 3.0), Rating(1, 8, 2, 2.0), Rating(1, 6, 4, 1.0), Rating(2, 9, 5, 1.0)]
    probes = next_like_probes(test)
    assert list(probes) == [1]
    assert [(p.liked, p.next_like) for p in probes[1]] == [(6, 7)]


def test_rolling_rate() -> None:
    events = [(0.5, True), (1.0, False), (9.0, True), (25.0, False)]
    assert rolling_rate(events, 10.0) == [(10.0, pytest.approx(2 / 3)), (30.0, 0.0)]
