"""Most-popular baseline on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recflow.experiments.config import PopularParams
from recflow.models import MODELS, PopularRecommender, build_model, load_model
from recflow.models.base import NotFittedError
from recflow.prep.interactions import Interactions


def interactions(users, items, n_users, n_items) -> Interactions:
    users, items = np.asarray(users, np.int32), np.asarray(items, np.int32)
    return Interactions(
        users, items, np.full(len(users), 4.0, np.float32), np.zeros(len(users), np.int64),
        np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


# item counts: 0 -> 1, 1 -> 3, 2 -> 3, 3 -> 0, 4 -> 2, 5 -> 0
TRAIN = interactions([0, 1, 2, 0, 1, 2, 3, 3, 1], [1, 1, 1, 2, 2, 2, 4, 0, 4], 5, 6)


@pytest.fixture
def pop():
    return PopularRecommender().fit(TRAIN)


def test_counts_and_scores(pop):
    np.testing.assert_array_equal(pop.item_counts_, [1, 3, 3, 0, 2, 0])
    s = pop.score(np.array([0, 4, 2]))
    assert s.shape == (3, 6) and s.dtype == np.float32
    np.testing.assert_array_equal(s, np.tile([1, 3, 3, 0, 2, 0], (3, 1)))


def test_ranking_ties_to_lower_index_and_seen_excluded(pop):
    items, scores = pop.recommend(np.arange(5), k=6)
    np.testing.assert_array_equal(
        items,
        [
            [4, 0, 3, 5, -1, -1],  # user 0 saw 1, 2
            [0, 3, 5, -1, -1, -1],  # user 1 saw 1, 2, 4
            [4, 0, 3, 5, -1, -1],  # user 2 saw 1, 2
            [1, 2, 3, 5, -1, -1],  # user 3 saw 4, 0
            [1, 2, 4, 0, 3, 5],  # user 4 saw nothing: 1 and 2 tie at 3 -> 1 first; 3 and 5 tie at 0
        ],
    )
    np.testing.assert_array_equal(scores[4], [3, 3, 2, 1, 0, 0])


def test_exclude_matrix(pop):
    exclude = sp.csr_matrix(([1, 1], ([4, 4], [1, 4])), shape=(5, 6))
    items, _ = pop.recommend([4], k=3, exclude=exclude)
    np.testing.assert_array_equal(items, [[2, 0, 3]])


def test_true_counts_not_batch_counts():
    # one item interacted 50 times must beat one interacted 40 times regardless of order
    users = np.arange(90)
    items = np.r_[np.zeros(50, int), np.ones(40, int)]
    pop = PopularRecommender().fit(interactions(users, items, 91, 2))
    np.testing.assert_array_equal(pop.recommend([90], k=2)[0], [[0, 1]])
    np.testing.assert_array_equal(pop.item_counts_, [50, 40])


def test_deterministic(pop):
    a = PopularRecommender().fit(TRAIN).recommend(np.arange(5), k=3)[0]
    np.testing.assert_array_equal(a, pop.recommend(np.arange(5), k=3)[0])


def test_not_fitted_and_no_ratings():
    with pytest.raises(NotFittedError):
        PopularRecommender().score([0])
    assert PopularRecommender.predicts_ratings is False
    with pytest.raises(NotImplementedError):
        PopularRecommender().fit(TRAIN).predict([0], [0])


def test_save_load_round_trip(pop, tmp_path):
    pop.save(tmp_path / "pop")
    loaded = PopularRecommender.load(tmp_path / "pop")
    also = load_model(tmp_path / "pop")
    assert type(also) is PopularRecommender
    for m in (loaded, also):
        np.testing.assert_array_equal(m.item_counts_, pop.item_counts_)
        for x, y in zip(pop.recommend(np.arange(5), k=4), m.recommend(np.arange(5), k=4)):
            np.testing.assert_array_equal(x, y)


def test_registry():
    assert MODELS["popular"] is PopularRecommender
    m = build_model(PopularParams())
    assert type(m) is PopularRecommender and m.get_params() == {}
