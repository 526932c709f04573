"""RankFusionRecommender (weighted reciprocal-rank fusion of fitted members) on hand-checkable data.

Save, load and the rest of the contract: ``tests/models/test_contract.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.models.rank_fusion import RankFusionRecommender
from recflow.prep.interactions import Interactions


def interactions(users, items, n_users, n_items) -> Interactions:
    return Interactions(
        np.asarray(users, np.int32), np.asarray(items, np.int32), np.ones(len(users), np.float32),
        np.zeros(len(users), np.int64), np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


# 2 users x 4 items: user 0 has seen item 3, user 1 items 0, 1 and 2
TRAIN = interactions([0, 1, 1, 1], [3, 0, 1, 2], 2, 4)


class Fixed(Recommender):
    """A member scoring every user with the same row."""

    name = "fixed"

    def __init__(self, row=()) -> None:
        self.row = row

    def fit(self, train, context=None):
        self._remember_seen(train)
        return self

    def score(self, users):
        return np.tile(np.asarray(self.row, np.float32), (len(np.atleast_1d(users)), 1))


def fused(rows: dict[str, list[float]], train: Interactions = TRAIN, **params) -> RankFusionRecommender:
    members = {name: Fixed(row).fit(train) for name, row in rows.items()}
    return RankFusionRecommender(tuple(rows), **params).fit(train, FitContext(members=members))


def test_scores_are_summed_reciprocal_ranks_of_the_unseen_items():
    # user 0, unseen items 0, 1, 2: a ranks them 1, 2, 3; b (best: item 3, but seen) ranks 2, 1, 0 as 1, 2, 3
    model = fused({"a": [4, 3, 2, 1], "b": [1, 2, 3, 4]}, k=0.0)
    np.testing.assert_allclose(model.score(np.array([0]))[0], [1 + 1 / 3, 1 / 2 + 1 / 2, 1 / 3 + 1, 0], rtol=1e-6)


def test_weights_and_k_enter_as_w_over_k_plus_rank():
    model = fused({"a": [4, 3, 2, 1], "b": [1, 2, 3, 4]}, weights=(3.0, 1.0), k=1.0)
    np.testing.assert_allclose(model.score(np.array([0]))[0], [3 / 2 + 1 / 4, 3 / 3 + 1 / 3, 3 / 4 + 1 / 2, 0], rtol=1e-6)


def test_only_each_members_depth_best_unseen_items_count():
    # depth 1: a's best unseen item is 0, b's is 2 (its best, item 3, is seen)
    model = fused({"a": [4, 3, 2, 1], "b": [1, 2, 3, 4]}, k=1.0, depth=1)
    np.testing.assert_allclose(model.score(np.array([0]))[0], [1 / 2, 0, 1 / 2, 0], rtol=1e-6)


def test_a_depth_cut_breaks_ties_towards_the_lower_index():
    model = fused({"a": [1, 1, 1, 1]}, train=interactions([0, 1, 1, 1], [0, 1, 2, 3], 2, 4), k=0.0, depth=2)
    np.testing.assert_allclose(model.score(np.array([0]))[0], [0, 1, 1 / 2, 0], rtol=1e-6)


def test_equal_weights_by_default():
    a = fused({"a": [4, 3, 2, 1], "b": [1, 2, 3, 4]})
    b = fused({"a": [4, 3, 2, 1], "b": [1, 2, 3, 4]}, weights=(2.5, 2.5))
    np.testing.assert_allclose(2.5 * a.score(np.array([0, 1])), b.score(np.array([0, 1])), rtol=1e-6)


def test_a_member_gives_nothing_to_an_item_it_never_recommends_and_all_members_must_agree_on_minus_inf():
    # item 1: -inf from both -> -inf; item 2: -inf from a only -> b's 1/(0 + 1) alone
    model = fused({"a": [4, -np.inf, -np.inf, 1], "b": [1, -np.inf, 3, 4]}, k=0.0)
    row = model.score(np.array([0]))[0]
    assert np.isneginf(row[1])
    assert row[2] == pytest.approx(1.0)
    assert row[0] == pytest.approx(1 + 1 / 2)


def test_recommend_ranks_by_the_fused_scores():
    items, _ = fused({"a": [4, 3, 2, 1], "b": [3, 1, 4, 2]}, k=0.0).recommend(np.array([0]), k=3)
    # a: 0, 1, 2 -> 1, 2, 3; b: 2, 0, 1 -> 1, 2, 3: item 0 = 1 + 1/2, item 2 = 1/3 + 1, item 1 = 1/2 + 1/3
    assert items[0].tolist() == [0, 2, 1]


def test_fit_refuses_missing_members_by_name():
    with pytest.raises(ValueError, match=r"missing: \['b'\]"):
        RankFusionRecommender(("a", "b")).fit(TRAIN, FitContext(members={"a": Fixed([1, 2, 3, 4]).fit(TRAIN)}))


def test_fit_refuses_a_member_fitted_on_other_data():
    other = interactions([0, 1, 1, 1], [2, 0, 1, 3], 2, 4)
    with pytest.raises(ValueError, match="'a' was not fitted on this training data"):
        RankFusionRecommender(("a",)).fit(TRAIN, FitContext(members={"a": Fixed([1, 2, 3, 4]).fit(other)}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(members=()), "at least one member"),
        (dict(members=("a", "a")), "twice"),
        (dict(members=("a", "b"), weights=(1.0,)), "1 weights for 2 members"),
        (dict(members=("a",), weights=(0.0,)), "must be positive"),
        (dict(members=("a",), k=-1.0), "k must be >= 0"),
        (dict(members=("a",), depth=0), "depth must be >= 1"),
        (dict(members=("rank_fusion",)), "its own member"),
    ],
)
def test_bad_params_are_refused_when_built(params, message):
    with pytest.raises(ValueError, match=message):
        RankFusionRecommender(**params)


def test_the_depth_cut_matches_a_full_stable_sort():
    from recflow.models.rank_fusion import _top

    scores = np.random.default_rng(0).integers(0, 4, (50, 30)).astype(np.float32)  # many ties
    scores[scores == 0] = -np.inf
    for depth in (1, 5, 29, 30):
        np.testing.assert_array_equal(_top(scores, depth), np.argsort(-scores, axis=1, kind="stable")[:, :depth])
