"""BiasedMFRecommender (mu + b_u + b_i + p_u . q_i by ALS) on tiny hand-checkable data."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models import load_model
from recflow.models.base import NotFittedError
from recflow.models.context import FitContext
from recflow.models.mf import BiasedMFRecommender
from recflow.prep.interactions import Interactions


def interactions(users, items, ratings, n_users, n_items) -> Interactions:
    return Interactions(
        np.asarray(users, np.int32), np.asarray(items, np.int32), np.asarray(ratings, np.float32),
        np.zeros(len(users), np.int64), np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


# an exactly rank-1 + biases rating matrix, 6 users x 5 items, mu = 3
P = np.array([1.0, -1.0, 2.0, 0.5, -2.0, 1.5])
Q = np.array([1.0, 0.5, -1.0, 2.0, -0.5])
BU = np.array([0.5, -0.5, 0.0, 0.25, -0.25, 0.0])
BI = np.array([0.2, -0.2, 0.4, 0.0, -0.4])
FULL = 3.0 + BU[:, None] + BI[None, :] + 0.5 * np.outer(P, Q)  # values in [0.75, 5]
# two thirds of the cells are observed (every user and item has some)
OBSERVED = np.add.outer(np.arange(6), np.arange(5)) % 3 != 0
LOW_RANK = interactions(*np.nonzero(OBSERVED), FULL[OBSERVED], 6, 5)

# hyperparameters that let ALS fit the low-rank matrix almost exactly
EXACT = dict(factors=2, reg=1e-3, reg_bias=1e-3, reg_exponent=0.0, epochs=15, seed=0)


def noisy_split(seed: int = 1) -> tuple[Interactions, Interactions]:
    """Pure-noise ratings on 12 users x 8 items: 45 train, 15 validation (overfitting is guaranteed)."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(12 * 8, size=60, replace=False)
    r = rng.integers(1, 6, 60)
    train = interactions(pairs[:45] // 8, pairs[:45] % 8, r[:45], 12, 8)
    valid = interactions(pairs[45:] // 8, pairs[45:] % 8, r[45:], 12, 8)
    return train, valid


OVERFIT = dict(factors=4, reg=0.01, reg_bias=0.01, reg_exponent=0.0, epochs=20, patience=2, seed=0)


def test_training_rmse_drops_over_epochs_on_low_rank_data():
    m = BiasedMFRecommender(**EXACT).fit(LOW_RANK)
    rmses = [h["train_rmse"] for h in m.history_]
    assert [h["epoch"] for h in m.history_] == list(range(1, 16))
    assert rmses[-1] < rmses[0] / 4
    assert rmses[-1] < 0.01
    # the model reproduces the observed ratings, and mu is the training mean
    assert m.global_mean_ == pytest.approx(FULL[OBSERVED].mean(), abs=1e-6)
    u, i = np.nonzero(OBSERVED)
    np.testing.assert_allclose(m.predict(u, i), FULL[OBSERVED], atol=0.02)
    assert "valid_rmse" not in m.history_[0] and m.best_epoch_ is None


def test_score_and_recommend_shapes():
    m = BiasedMFRecommender(**EXACT).fit(LOW_RANK)
    s = m.score(np.array([0, 3]))
    assert s.shape == (2, 5) and s.dtype == np.float32
    # score is the unclipped mu + b_u + b_i + p_u . q_i
    expected = m.global_mean_ + m.user_bias_[[0, 3], None] + m.item_bias_[None, :] + m.user_factors_[[0, 3]] @ m.item_factors_.T
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    items, scores = m.recommend(np.array([0, 3]), k=2)
    assert items.shape == (2, 2) and scores.shape == (2, 2)
    assert m.predict(np.array([0, 1, 2]), np.array([0, 1, 2])).shape == (3,)
    assert m.user_embeddings().shape == (6, 2) and m.item_embeddings().shape == (5, 2)
    assert BiasedMFRecommender.predicts_ratings is True


def test_recommend_excludes_seen_items():
    m = BiasedMFRecommender(**EXACT).fit(LOW_RANK)
    items, _ = m.recommend(np.arange(6), k=5)
    for u in range(6):
        rec = items[u][items[u] >= 0]
        assert not OBSERVED[u, rec].any()
        assert sorted(rec.tolist()) == np.flatnonzero(~OBSERVED[u]).tolist()
        assert np.all(items[u][len(rec) :] == -1)


def test_two_fits_with_a_seed_are_identical():
    train, _ = noisy_split()
    a = BiasedMFRecommender(factors=3, epochs=4, seed=7).fit(train)
    b = BiasedMFRecommender(factors=3, epochs=4, seed=7).fit(train)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    for x, y in zip(a.recommend(np.arange(12), k=4), b.recommend(np.arange(12), k=4)):
        np.testing.assert_array_equal(x, y)
    # the seed matters: it draws the initial item factors
    c = BiasedMFRecommender(factors=3, epochs=4, seed=8).fit(train)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


def test_save_load_round_trip(tmp_path):
    train, valid = noisy_split()
    m = BiasedMFRecommender(**OVERFIT).fit(train, FitContext(valid=valid))
    m.save(tmp_path / "mf")
    users = np.array([0, 3, -1, 5, -1, 11])
    items = np.array([1, -1, 2, 7, -1, 0])
    for loaded in (BiasedMFRecommender.load(tmp_path / "mf"), load_model(tmp_path / "mf")):
        assert type(loaded) is BiasedMFRecommender
        assert loaded.get_params() == m.get_params()
        assert loaded.best_epoch_ == m.best_epoch_ and loaded.rating_range_ == m.rating_range_
        np.testing.assert_array_equal(loaded.predict(users, items), m.predict(users, items))
        for x, y in zip(m.recommend(np.arange(12), k=4), loaded.recommend(np.arange(12), k=4)):
            np.testing.assert_array_equal(x, y)


def test_unknown_index_falls_back_to_biases_and_global_mean():
    m = BiasedMFRecommender(**EXACT, clip=False).fit(LOW_RANK)
    mu, bu, bi = m.global_mean_, m.user_bias_, m.item_bias_
    pred = m.predict([-1, 2, -1, 2], [3, -1, -1, 3])
    np.testing.assert_allclose(pred, [mu + bi[3], mu + bu[2], mu, mu + bu[2] + bi[3] + m.user_factors_[2] @ m.item_factors_[3]], rtol=1e-12)
    with pytest.raises(IndexError):
        m.predict([6], [0])
    with pytest.raises(IndexError):
        m.predict([0], [-2])
    with pytest.raises(ValueError):
        m.predict([0, 1], [0])


def test_unrated_user_and_item_have_zero_parameters():
    # user 6 and item 5 are in the index but have no training ratings
    u, i = np.nonzero(OBSERVED)
    train = interactions(u, i, FULL[OBSERVED], 7, 6)
    m = BiasedMFRecommender(**EXACT, clip=False).fit(train)
    assert m.user_bias_[6] == 0 and np.all(m.user_factors_[6] == 0)
    assert m.item_bias_[5] == 0 and np.all(m.item_factors_[5] == 0)
    np.testing.assert_allclose(m.predict([6, 0], [0, 5]), [m.global_mean_ + m.item_bias_[0], m.global_mean_ + m.user_bias_[0]])


def test_predictions_are_clipped_to_the_training_rating_range():
    # the unobserved cells of FULL go down to 0.75, below the observed minimum
    lo, hi = FULL[OBSERVED].min(), FULL[OBSERVED].max()
    clipped = BiasedMFRecommender(**EXACT).fit(LOW_RANK)
    raw = BiasedMFRecommender(**EXACT, clip=False).fit(LOW_RANK)
    assert clipped.rating_range_ == pytest.approx((lo, hi))
    u, i = np.nonzero(np.ones((6, 5), bool))
    p_raw = raw.predict(u, i)
    assert p_raw.min() < lo  # the test data does leave the range
    np.testing.assert_allclose(clipped.predict(u, i), np.clip(p_raw, *clipped.rating_range_), rtol=1e-12)
    # ranking scores are never clipped
    np.testing.assert_array_equal(clipped.score(np.arange(6)), raw.score(np.arange(6)))


def test_early_stopping_keeps_the_best_validation_epoch():
    train, valid = noisy_split()
    m = BiasedMFRecommender(**OVERFIT).fit(train, FitContext(valid=valid))
    valid_rmse = [h["valid_rmse"] for h in m.history_]
    assert all("train_rmse" in h and "valid_rmse" in h for h in m.history_)
    best = int(np.argmin(valid_rmse)) + 1
    assert m.best_epoch_ == best
    # stopped early: exactly `patience` epochs without improvement after the best one
    assert len(m.history_) == best + 2 < 20
    # the kept parameters are the best epoch's: a plain fit of best_epoch_ epochs gives the same
    plain = BiasedMFRecommender(**{**OVERFIT, "epochs": best}).fit(train)
    np.testing.assert_array_equal(m.user_factors_, plain.user_factors_)
    np.testing.assert_array_equal(m.item_bias_, plain.item_bias_)
    np.testing.assert_allclose(m.predict(valid.user_idx, valid.item_idx), plain.predict(valid.user_idx, valid.item_idx))
    rmse = np.sqrt(np.mean((m.predict(valid.user_idx, valid.item_idx) - valid.ratings) ** 2))
    assert rmse == pytest.approx(min(valid_rmse), rel=1e-6)


def test_on_epoch_end_is_called_once_per_epoch():
    train, valid = noisy_split()
    calls = []
    ctx = FitContext(valid=valid, on_epoch_end=lambda epoch, metrics: calls.append((epoch, metrics)))
    m = BiasedMFRecommender(**OVERFIT).fit(train, ctx)
    assert [e for e, _ in calls] == list(range(1, len(m.history_) + 1))
    assert [metrics for _, metrics in calls] == [{"train_rmse": h["train_rmse"], "valid_rmse": h["valid_rmse"]} for h in m.history_]


def test_unfitted_model_raises():
    m = BiasedMFRecommender()
    for call in (lambda: m.predict([0], [0]), lambda: m.score([0]), lambda: m.recommend([0]), lambda: m.user_embeddings()):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize("params", [{"factors": 0}, {"epochs": 0}, {"reg": 0.0}, {"reg": -1.0}, {"reg_bias": -0.1}], ids=str)
def test_invalid_hyperparameters_are_refused(params):
    with pytest.raises(ValueError):
        BiasedMFRecommender(**params).fit(LOW_RANK)


def test_validation_on_another_index_is_refused():
    other = interactions([0], [0], [3.0], 6, 4)  # 4 items, train has 5
    with pytest.raises(ValueError, match="context.valid"):
        BiasedMFRecommender().fit(LOW_RANK, FitContext(valid=other))
