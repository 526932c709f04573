"""``recflow.prep.genres.overlap_queries``: which items a genre-overlap measurement asks about (the index stage and the hybrid model share it)."""

from __future__ import annotations

import numpy as np

from recflow.prep.genres import overlap_queries

GENRES = np.array([[1, 0], [0, 0], [0, 1], [1, 1], [0, 1], [1, 0]], np.int8)  # item 1 has no genre


def test_queries_are_the_eligible_items_with_a_genre():
    eligible = np.array([True, True, True, False, True, True])
    assert overlap_queries(GENRES, eligible).tolist() == [0, 2, 4, 5]


def test_a_cap_keeps_a_seeded_sorted_sample():
    eligible = np.ones(6, bool)
    sample = overlap_queries(GENRES, eligible, cap=3, seed=4)
    assert len(sample) == 3 and set(sample) <= {0, 2, 3, 4, 5} and sample.tolist() == sorted(sample.tolist())
    assert np.array_equal(sample, overlap_queries(GENRES, eligible, cap=3, seed=4))
    expected = np.sort(np.random.default_rng(4).choice(np.array([0, 2, 3, 4, 5]), 3, replace=False))
    assert np.array_equal(sample, expected)
    assert overlap_queries(GENRES, eligible, cap=5).tolist() == [0, 2, 3, 4, 5]  # not more than the cap: all


def test_no_genre_columns_means_no_queries():
    assert overlap_queries(np.zeros((4, 0), np.int8), np.ones(4, bool)).tolist() == []
