"""item_knn: cosine item-item neighbours, scores checked by hand on 3 users x 3 items."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models import ItemKNNRecommender, load_model
from recflow.prep.interactions import Interactions


def interactions(users, items, n_users, n_items, ratings=None) -> Interactions:
    ratings = np.ones(len(users)) if ratings is None else ratings
    return Interactions(
        np.asarray(users, np.int32), np.asarray(items, np.int32), np.asarray(ratings, np.float32),
        np.zeros(len(users), np.int64), np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


# X = [[1, 1, 0],      every item has 2 users; co-occurrences c01 = 2, c02 = 1, c12 = 1,
#      [1, 1, 1],      so cos(0, 1) = 2 / 2 = 1, cos(0, 2) = cos(1, 2) = 1 / 2
#      [0, 0, 1]]
TINY = interactions([0, 0, 1, 1, 1, 2], [0, 1, 0, 1, 2, 2], 3, 3)


def test_all_neighbours_scores_are_sums_of_cosines_of_the_users_items():
    m = ItemKNNRecommender(k=2).fit(TINY)
    np.testing.assert_allclose(
        m.score(np.arange(3)),
        [
            [1.0, 1.0, 1.0],  # 0+1 | 1+0 | 0.5+0.5
            [1.5, 1.5, 1.0],  # 0+1+0.5 | 1+0+0.5 | 0.5+0.5+0
            [0.5, 0.5, 0.0],
        ],
    )  # its item 2 votes 1/2 for 0 and 1


def test_k_keeps_each_items_nearest_neighbours_only_ties_to_the_lower_index():
    m = ItemKNNRecommender(k=1).fit(TINY)
    # neighbours: of 0 -> 1 (1.0); of 1 -> 0 (1.0); of 2 -> 0 (0.5, tied with 1, lower index wins)
    np.testing.assert_allclose(m.item_weights().toarray(), [[0, 1, 0.5], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(m.score(np.arange(3)), [[1, 1, 0.5], [1, 1, 0.5], [0, 0, 0]])


def test_shrink_is_added_to_the_cosine_denominator():
    m = ItemKNNRecommender(k=2, shrink=2.0).fit(TINY)
    # cos(0, 1) = 2 / (2 + 2) = 1/2 ; cos(0, 2) = 1 / (2 + 2) = 1/4
    np.testing.assert_allclose(m.item_weights().toarray(), [[0, 0.5, 0.25], [0.5, 0, 0.25], [0.25, 0.25, 0]])


def test_implicit_threshold_drops_low_ratings_before_the_similarity():
    rated = interactions([0, 0, 1, 1, 1, 2], [0, 1, 0, 1, 2, 2], 3, 3, ratings=[5, 5, 5, 5, 1, 5])
    m = ItemKNNRecommender(k=2, implicit_threshold=3).fit(rated)
    # without user 1's item 2: c01 = 2, item 2 has one user and no co-occurrence
    np.testing.assert_allclose(m.item_weights().toarray(), [[0, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_saved_model_scores_the_same(tmp_path):
    m = ItemKNNRecommender(k=1).fit(TINY)
    m.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").score(np.arange(3)), m.score(np.arange(3)))


@pytest.mark.parametrize("params", [{"k": 0}, {"shrink": -1.0}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(ValueError):
        ItemKNNRecommender(**params).fit(TINY)
