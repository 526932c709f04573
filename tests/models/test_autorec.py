"""AutoRecRecommender (I-AutoRec: item autoencoder on observed ratings) on tiny hand-checkable data."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models import load_model
from recflow.models.autorec import AutoRecRecommender
from recflow.models.bias import BiasRecommender
from recflow.models.context import FitContext
from recflow.prep.interactions import Interactions


def interactions(users, items, ratings, n_users, n_items) -> Interactions:
    return Interactions(
        np.asarray(users, np.int32), np.asarray(items, np.int32), np.asarray(ratings, np.float32),
        np.zeros(len(users), np.int64), np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


# 5 users x 4 items, two thirds observed; user 5 and item 4 exist in the index but have no rating
RATINGS = np.array(
    [
        [5, 4, 0, 1],
        [4, 0, 2, 1],
        [0, 4, 1, 2],
        [1, 2, 4, 0],
        [2, 0, 5, 4],
    ],
    dtype=np.float64,
)
OBSERVED = RATINGS > 0
TRAIN = interactions(*np.nonzero(OBSERVED), RATINGS[OBSERVED], 6, 5)

# no penalty, a high rate, every item in one batch: the autoencoder memorises the observed ratings
MEMORISE = dict(hidden=8, reg=0.0, epochs=400, learning_rate=0.05, batch_size=8, schedule="constant", seed=0)
SMALL = dict(hidden=4, reg=1.0, epochs=5, learning_rate=0.01, batch_size=2, seed=0)


def test_it_fits_the_observed_ratings_of_a_tiny_matrix():
    m = AutoRecRecommender(**MEMORISE).fit(TRAIN)
    u, i = np.nonzero(OBSERVED)
    np.testing.assert_allclose(m.predict(u, i), RATINGS[OBSERVED], atol=0.05)
    assert m.history_[-1]["train_rmse"] < m.history_[0]["train_rmse"] / 10


def test_predictions_are_clipped_to_the_training_range_and_scores_are_not():
    m = AutoRecRecommender(**SMALL).fit(TRAIN)
    m.output_bias_ = m.output_bias_ + np.float32(10.0)  # every known output far above 5 stars
    assert m.predict([0, 1], [0, 1]).tolist() == [5.0, 5.0]
    assert (m.score(np.array([0, 1]))[:, :4] > 5.0).all()
    m.output_bias_ = m.output_bias_ - np.float32(20.0)
    assert m.predict([0, 1], [0, 1]).tolist() == [1.0, 1.0]


def test_users_and_items_without_training_ratings_get_the_bias_models_prediction():
    m = AutoRecRecommender(**SMALL).fit(TRAIN)
    bias = BiasRecommender().fit(TRAIN)
    users, items = np.array([5, 0, 5, -1, 2, -1]), np.array([0, 4, 4, 1, -1, -1])  # cold user, cold item, both, unknown (-1)
    np.testing.assert_array_equal(m.predict(users, items), bias.predict(users, items))
    np.testing.assert_array_equal(m.score(np.array([5]))[0], bias.score(np.array([5]))[0])
    np.testing.assert_array_equal(m.score(np.array([0, 1]))[:, 4], bias.score(np.array([0, 1]))[:, 4])


def test_score_is_the_unclipped_prediction_of_every_item():
    m = AutoRecRecommender(**MEMORISE).fit(TRAIN)
    m.clip = False
    users = np.repeat(np.arange(6), 5)
    items = np.tile(np.arange(5), 6)
    np.testing.assert_allclose(m.score(np.arange(6)).ravel(), m.predict(users, items), rtol=1e-6)


def test_save_and_load_give_identical_predictions(tmp_path):
    m = AutoRecRecommender(**SMALL).fit(TRAIN)
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    users, items = np.repeat(np.arange(-1, 6), 6), np.tile(np.arange(-1, 5), 7)
    np.testing.assert_array_equal(back.predict(users, items), m.predict(users, items))
    np.testing.assert_array_equal(back.score(np.arange(6)), m.score(np.arange(6)))


def test_the_same_seed_gives_the_same_predictions_and_another_seed_others():
    u, i = np.nonzero(OBSERVED)
    first = AutoRecRecommender(**SMALL).fit(TRAIN).predict(u, i)
    np.testing.assert_array_equal(AutoRecRecommender(**SMALL).fit(TRAIN).predict(u, i), first)
    assert not np.array_equal(AutoRecRecommender(**{**SMALL, "seed": 1}).fit(TRAIN).predict(u, i), first)


def test_with_a_validation_part_it_stops_after_patience_worse_epochs_and_keeps_the_best():
    rng = np.random.default_rng(1)
    pairs = rng.choice(12 * 8, size=60, replace=False)  # pure noise: overfitting is guaranteed
    r = rng.integers(1, 6, 60)
    train = interactions(pairs[:45] // 8, pairs[:45] % 8, r[:45], 12, 8)
    valid = interactions(pairs[45:] // 8, pairs[45:] % 8, r[45:], 12, 8)
    m = AutoRecRecommender(**{**MEMORISE, "patience": 2}).fit(train, FitContext(valid=valid))
    scores = [h["valid_rmse"] for h in m.history_]
    assert len(scores) < MEMORISE["epochs"]
    assert m.best_epoch_ == int(np.argmin(scores)) + 1 == len(scores) - 2
    best_rmse = float(np.sqrt(np.mean((m.predict(valid.user_idx, valid.item_idx) - valid.ratings) ** 2)))
    assert best_rmse == pytest.approx(min(scores), abs=1e-6)


@pytest.mark.parametrize("bad", [dict(hidden=0), dict(epochs=0), dict(batch_size=0), dict(reg=-1.0), dict(learning_rate=0.0), dict(schedule="step")])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        AutoRecRecommender(**bad).fit(TRAIN)


def test_a_warm_fit_continues_from_the_earlier_encoder_and_decoder_by_user_id():
    from recflow.models.warm import WarmStart

    still = {**SMALL, "learning_rate": 1e-9}  # hardly moves: it ends where it started
    earlier = AutoRecRecommender(**still).fit(TRAIN)
    # tonight user -1 is new and sorts first: every known user's index moves up by one
    tonight = Interactions(
        np.r_[TRAIN.user_idx + 1, 0].astype(np.int32), np.r_[TRAIN.item_idx, 0].astype(np.int32), np.r_[TRAIN.ratings, 3.0].astype(np.float32),
        np.zeros(len(TRAIN) + 1, np.int64), np.r_[-1, np.arange(6)], np.arange(5),
    )  # fmt: skip
    warm = WarmStart.between(earlier, TRAIN.user_ids, TRAIN.item_ids, tonight)
    assert warm.user_map.tolist() == [-1, 0, 1, 2, 3, 4, 5]
    fit = AutoRecRecommender(**still).fit(tonight, FitContext(warm_start=warm))
    assert fit.warm_started_
    np.testing.assert_allclose(fit.encoder_[1:], earlier.encoder_, atol=1e-7)
    np.testing.assert_allclose(fit.decoder_[1:], earlier.decoder_, atol=1e-7)
    np.testing.assert_allclose(fit.output_bias_[1:], earlier.output_bias_, atol=1e-7)
    assert len(fit.history_) == 2  # warm_min_epochs: a seventh of the rows is new, of 5 epochs


def test_a_fit_saved_without_its_encoder_is_not_continued(tmp_path):
    from recflow.models.warm import WarmStart

    earlier = AutoRecRecommender(**SMALL).fit(TRAIN)
    earlier.encoder_ = None  # as a fit saved before the encoder was kept
    fit = AutoRecRecommender(**SMALL).fit(TRAIN, FitContext(warm_start=WarmStart.between(earlier, TRAIN.user_ids, TRAIN.item_ids, TRAIN)))
    assert not fit.warm_started_ and "without its encoder" in fit.warm_declined_ and len(fit.history_) == SMALL["epochs"]
