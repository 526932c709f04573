"""evaluate_ranking / evaluate_ratings on a split small enough to rank by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recflow.evaluation.evaluate import (
    check_evaluable,
    evaluable_users,
    evaluate_ranking,
    evaluate_ranking_per_user,
    evaluate_ratings,
    relevance_matrix,
    with_confidence_intervals,
)
from recflow.evaluation.metrics import rmse
from recflow.models import BiasRecommender, PopularRecommender
from recflow.models.base import Recommender
from recflow.prep.interactions import index_split
from recflow.prep.split import NothingToEvaluate

# users 1..4 -> 0..3, items 10..50 -> 0..4
ROWS = [
    # user, item, rating, split
    (1, 10, 4, "train"), (1, 20, 3, "train"),
    (2, 10, 5, "train"), (2, 30, 2, "train"),
    (3, 10, 3, "train"), (3, 20, 4, "train"),
    (1, 30, 4, "valid"),
    (1, 40, 5, "test"), (1, 50, 2, "test"),
    (2, 20, 4, "test"),
    (3, 50, 1, "test"),
    (4, 10, 5, "test"),  # user 4 has no train history: cold
]  # fmt: skip


@pytest.fixture
def parts():
    f = pd.DataFrame(ROWS, columns=["user_id", "item_id", "rating", "split"])
    f["timestamp"] = np.arange(len(f))
    return index_split(f)


@pytest.fixture
def pop(parts):
    # train counts: item 10 -> 3, 20 -> 2, 30 -> 1, 40 -> 0, 50 -> 0
    return PopularRecommender().fit(parts["train"])


L3 = math.log2(3)


def test_ranking_by_hand(parts, pop):
    # seen-masked popularity ranking (ties -> lower index):
    #   user 1 (seen 10, 20): [30, 40, 50]  relevant {40, 50} -> hits [0, 1, 1]
    #   user 2 (seen 10, 30): [20, 40, 50]  relevant {20}     -> hits [1, 0, 0]
    #   user 3 (seen 10, 20): [30, 40, 50]  relevant {50}     -> hits [0, 0, 1]
    out = evaluate_ranking(pop, parts["train"], parts["test"], ks=[1, 3])
    assert out["n_eval_users"] == 3
    assert out["n_cold_test_users"] == 1
    assert out["recall_at_1"] == pytest.approx((0 + 1 + 0) / 3)
    assert out["recall_at_3"] == pytest.approx((2 / 2 + 1 + 1) / 3)
    assert out["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert out["hit_rate_at_1"] == pytest.approx(1 / 3)
    ndcg_u1 = (1 / L3 + 1 / 2) / (1 + 1 / L3)  # hits at 2, 3; IDCG over 2 positions
    ndcg_u3 = (1 / 2) / 1  # hit at 3; IDCG over 1 position
    assert out["ndcg_at_3"] == pytest.approx((ndcg_u1 + 1 + ndcg_u3) / 3)
    assert out["map_at_3"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 + (1 / 3) / 1) / 3)
    assert out["coverage_at_1"] == pytest.approx(2 / 5)  # {30, 20}
    assert out["coverage_at_3"] == pytest.approx(4 / 5)  # {30, 40, 50, 20}


def test_exclude_masks_validation_items(parts, pop):
    # masking user 1's validation item 30 moves 40 and 50 up: hits [1, 1, -]
    out = evaluate_ranking(pop, parts["train"], parts["test"], ks=[1, 3], exclude=parts["valid"].seen)
    assert out["recall_at_1"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert out["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)  # the -1 pad is a miss


def test_relevance_threshold(parts, pop):
    # rating >= 3: user 1 keeps {40}, user 3 has nothing relevant (dropped), user 4 is still cold
    out = evaluate_ranking(pop, parts["train"], parts["test"], ks=[1, 3], relevance_threshold=3)
    assert out["n_eval_users"] == 2
    assert out["n_cold_test_users"] == 1
    assert out["recall_at_1"] == pytest.approx((0 + 1) / 2)
    assert out["recall_at_3"] == 1.0
    users, n_cold = evaluable_users(parts["train"], parts["test"], 3)
    np.testing.assert_array_equal(users, [0, 1])
    assert relevance_matrix(parts["test"], 3).nnz == 3  # (1, 40), (2, 20), (4, 10)


def test_population_counts_add_up_to_the_test_users(parts, pop):
    # test users 1, 2, 3, 4; rating >= 3: user 3 (only a 1) has nothing relevant, user 4 is cold
    out = evaluate_ranking(pop, parts["train"], parts["test"], ks=[1], relevance_threshold=3)
    assert {k: out[k] for k in ("n_test_users", "n_eval_users", "n_cold_test_users", "n_test_users_no_relevant")} == {
        "n_test_users": 4,
        "n_eval_users": 2,
        "n_cold_test_users": 1,
        "n_test_users_no_relevant": 1,
    }
    every = evaluate_ranking(pop, parts["train"], parts["test"], ks=[1])
    assert (every["n_test_users"], every["n_eval_users"], every["n_test_users_no_relevant"]) == (4, 3, 0)


def test_per_user_values_are_kept_by_raw_user_id(parts, pop):
    # hits as in test_ranking_by_hand: recall@3 = 1 for users 1, 2, 3; recall@1 = 0, 1, 0
    metrics, per_user = evaluate_ranking_per_user(pop, parts["train"], parts["test"], ks=[1, 3])
    assert per_user["user_id"].tolist() == [1, 2, 3]
    assert per_user["recall_at_1"].tolist() == [0.0, 1.0, 0.0]
    assert per_user["recall_at_3"].tolist() == [1.0, 1.0, 1.0]
    assert set(per_user.columns) == {"user_id"} | {f"{m}_at_{k}" for m in ("recall", "precision", "ndcg", "map", "hit_rate") for k in (1, 3)}
    assert metrics["recall_at_1"] == per_user["recall_at_1"].mean()


def test_confidence_intervals_sit_beside_each_per_user_metric(parts, pop):
    metrics, per_user = evaluate_ranking_per_user(pop, parts["train"], parts["test"], ks=[1, 3])
    out = with_confidence_intervals(metrics, per_user, n_boot=200, seed=0)
    assert (out["recall_at_3_ci_low"], out["recall_at_3_ci_high"]) == (1.0, 1.0)  # every user at 1
    assert 0.0 <= out["recall_at_1_ci_low"] <= metrics["recall_at_1"] <= out["recall_at_1_ci_high"] <= 1.0
    assert "coverage_at_1_ci_low" not in out  # coverage is a catalogue share, not a mean over users
    assert out == with_confidence_intervals(metrics, per_user, n_boot=200, seed=0)


def test_batching_does_not_change_results(parts, pop):
    a = evaluate_ranking(pop, parts["train"], parts["test"], ks=[1, 2, 3])
    b = evaluate_ranking(pop, parts["train"], parts["test"], ks=[1, 2, 3], batch_users=1)
    assert a == b


def test_k_beyond_catalogue_pads(parts, pop):
    out = evaluate_ranking(pop, parts["train"], parts["test"], ks=[10])
    assert out["recall_at_10"] == 1.0
    assert out["precision_at_10"] == pytest.approx((2 + 1 + 1) / 3 / 10)


def test_mismatched_index_is_rejected(parts, pop):
    other = index_split(pd.DataFrame({"user_id": [1], "item_id": [10], "rating": [4.0], "timestamp": [0], "split": ["test"]}))
    with pytest.raises(ValueError):
        evaluate_ranking(pop, parts["train"], other["test"], ks=[1])
    with pytest.raises(ValueError):
        evaluate_ranking(pop, parts["train"], parts["test"], ks=[])


def test_evaluate_ratings_matches_predict(parts):
    model = BiasRecommender(reg_user=0.5, reg_item=0.5, epochs=3).fit(parts["train"])
    test = parts["test"]
    out = evaluate_ratings(model, test, clip=(1, 5))
    pred = np.clip(model.predict(test.user_idx, test.item_idx), 1, 5)
    assert out["n_rated"] == 5
    assert out["rmse"] == pytest.approx(rmse(test.ratings, pred))
    assert out["mae"] == pytest.approx(np.mean(np.abs(test.ratings - pred)))
    assert evaluate_ratings(model, test, batch_size=2) == evaluate_ratings(model, test)


class _Constant(Recommender):
    name = "constant"
    predicts_ratings = True

    def __init__(self, value: float = 6.0):
        self.value = value

    def fit(self, train):
        self._remember_seen(train)
        return self

    def score(self, users):
        return np.zeros((len(users), self.n_items), np.float32)

    def predict(self, users, items):
        return np.full(len(users), self.value)


def test_evaluate_ratings_states_its_population(parts):
    # test ratings 5, 2, 4, 1, 5; the 5 of user 4 is the one row of a user without train rows
    out = evaluate_ratings(_Constant(3.0).fit(parts["train"]), parts["test"], train=parts["train"])
    assert (out["n_rated"], out["n_rated_cold_users"], out["rated_min"], out["rated_max"]) == (5, 1, 1.0, 5.0)


def test_evaluate_ratings_clips(parts):
    test = parts["test"]  # ratings 5, 2, 4, 1, 5
    model = _Constant(6.0).fit(parts["train"])
    raw = evaluate_ratings(model, test)
    # errors 1, 4, 2, 5, 1: MSE = (1 + 16 + 4 + 25 + 1) / 5 = 47 / 5 ; MAE = 13 / 5
    assert raw["rmse"] == pytest.approx(math.sqrt(47 / 5))
    assert raw["mae"] == pytest.approx(13 / 5)
    clipped = evaluate_ratings(model, test, clip=(1, 5))
    # clipped to 5: errors 0, 3, 1, 4, 0: MSE = 26 / 5 ; MAE = 8 / 5
    assert clipped["rmse"] == pytest.approx(math.sqrt(26 / 5))
    assert clipped["mae"] == pytest.approx(8 / 5)


def test_evaluate_ratings_needs_a_rating_model(parts, pop):
    with pytest.raises(TypeError):
        evaluate_ratings(pop, parts["test"])


def test_a_relevance_threshold_no_warm_test_rating_reaches_leaves_nothing_to_evaluate(parts):
    # warm test ratings top out at 5 (user 1, item 40)
    check_evaluable(parts["train"], parts["test"], relevance_threshold=5.0)
    with pytest.raises(NothingToEvaluate) as error:
        check_evaluable(parts["train"], parts["test"], relevance_threshold=5.5)
    assert str(error.value) == (
        "nothing to evaluate: 4 users, 5 test rows of 4 users; no test user with training ratings has a test "
        "rating >= 5.5 (evaluation.relevance_threshold); 0 cold test users (no training ratings) do not count."
    )


def test_cold_start_metrics_judge_newcomers_apart_from_the_warm_users():
    from recflow.evaluation.evaluate import cold_start_metrics

    rows = [
        (1, 10, 4, "train"),
        (1, 20, 4, "train"),
        (2, 10, 4, "train"),
        (2, 30, 4, "train"),
        (1, 40, 4, "test"),  # a warm user tested on item 40, which no train row has (a cold item)
        (9, 10, 4, "test"),  # user 9 is cold: popular ranks item 10 first for them
    ]
    parts = index_split(pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "split"]).assign(timestamp=0))
    model = PopularRecommender().fit(parts["train"])
    got = cold_start_metrics(model, parts["train"], parts["test"], ks=[1, 2])
    assert got["n_cold_items"] == 1 and got["n_cold_item_test_rows"] == 1
    assert got["cold_users_recall_at_1"] == 1.0 and got["cold_users_hit_rate_at_2"] == 1.0
    assert got["cold_items_recall_at_1"] == 0.0  # popularity ranks an item it has no count for last
    assert got["cold_items_recall_at_2"] == 1.0  # ... and user 1 has only items 30 and 40 left
    assert got["cold_items_share_at_1"] == 0.0
