"""Warm starts (``recflow.models.warm``): the id maps, the epoch rule, EASE's exact Gram update."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.models.context import FitContext
from recflow.models.ease import EASERecommender
from recflow.models.edlae import EDLAERecommender
from recflow.models.warm import WarmStart, grow_rows, replay_sample, warm_epochs
from recflow.prep.interactions import index_split


def _parts(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=1.0, timestamp=0, split="train")
    return index_split(frame)["train"]


OLD = _parts([(10, 100), (10, 200), (20, 200), (20, 300), (30, 100)])
# user 5 and item 150 are new (sorted before known ids, so every known index moves); user 10 adds item 300
NEW = _parts([(10, 100), (10, 200), (20, 200), (20, 300), (30, 100), (10, 300), (5, 150), (5, 100)])


def test_the_maps_follow_raw_ids_and_count_the_rows_the_earlier_fit_did_not_see():
    warm = WarmStart.between(EASERecommender(l2=1.0).fit(OLD), OLD.user_ids, OLD.item_ids, NEW)
    assert NEW.user_ids.tolist() == [5, 10, 20, 30] and warm.user_map.tolist() == [-1, 0, 1, 2]
    assert NEW.item_ids.tolist() == [100, 150, 200, 300] and warm.item_map.tolist() == [0, -1, 1, 2]
    assert (warm.n_new_rows, warm.n_rows) == (3, 8)


def test_a_warm_ease_gram_matrix_equals_a_cold_one_exactly():
    earlier = EASERecommender(l2=1.0).fit(OLD)
    warm = EASERecommender(l2=1.0).fit(NEW, FitContext(warm_start=WarmStart.between(earlier, OLD.user_ids, OLD.item_ids, NEW)))
    cold = EASERecommender(l2=1.0).fit(NEW)
    np.testing.assert_array_equal(warm.G_, cold.G_)
    np.testing.assert_array_equal(warm.B_, cold.B_)


def test_a_warm_edlae_with_user_weights_matches_a_cold_one_to_float32_rounding():
    earlier = EDLAERecommender(l2=1.0, user_exponent=0.5).fit(OLD)
    warm = EDLAERecommender(l2=1.0, user_exponent=0.5).fit(NEW, FitContext(warm_start=WarmStart.between(earlier, OLD.user_ids, OLD.item_ids, NEW)))
    cold = EDLAERecommender(l2=1.0, user_exponent=0.5).fit(NEW)
    np.testing.assert_allclose(warm.G_, cold.G_, atol=1e-6)
    np.testing.assert_allclose(warm.B_, cold.B_, atol=1e-5)


def test_a_warm_fit_trains_the_share_of_new_rows_of_its_epochs_within_its_floor_and_budget():
    assert warm_epochs(60, 0.005, 3) == 3
    assert warm_epochs(60, 0.25, 3) == 15
    assert warm_epochs(10, 1.0, 2) == 10
    assert warm_epochs(2, 0.0, 3) == 2


def _warm_and_cold(params: dict, new):
    earlier = EASERecommender(**params).fit(OLD)
    warm = EASERecommender(**params).fit(new, FitContext(warm_start=WarmStart.between(earlier, OLD.user_ids, OLD.item_ids, new)))
    return warm, EASERecommender(**params).fit(new)


def test_a_top_items_ease_warm_starts_exactly_while_its_subset_keeps_the_same_items():
    warm, cold = _warm_and_cold({"l2": 1.0, "top_items": 2}, NEW)  # items 100 and 200 lead both nights
    assert warm.warm_started_ and warm.items_.tolist() == cold.items_.tolist() == [0, 2]
    np.testing.assert_array_equal(warm.G_, cold.G_)
    np.testing.assert_array_equal(warm.B_, cold.B_)


def test_a_top_items_ease_gets_an_entering_items_gram_row_from_its_whole_history_and_re_solves_when_one_left():
    new = _parts([(10, 100), (10, 200), (20, 200), (20, 300), (30, 100), (10, 300), (5, 150), (5, 100), (30, 300)])  # 300 now ties 100
    warm, cold = _warm_and_cold({"l2": 1.0, "top_items": 2, "warm_resolve": 1.0}, new)
    assert warm.warm_started_ and warm.items_.tolist() == cold.items_.tolist() == [0, 3]  # 300 (with history) in, 200 out
    np.testing.assert_array_equal(warm.G_, cold.G_)
    assert warm.warm_fit_["resolved"] is True and "left the kept items" in warm.warm_fit_["why"]
    np.testing.assert_array_equal(warm.B_, cold.B_)


def test_a_top_items_edlae_reweights_the_users_whose_kept_row_moved_with_the_subset_even_without_new_rows():
    new = _parts([(10, 100), (10, 200), (20, 200), (20, 300), (30, 100), (10, 300), (5, 150), (5, 100), (30, 300)])
    params = {"l2": 1.0, "user_exponent": 0.5, "top_items": 2}
    earlier = EDLAERecommender(**params).fit(OLD)
    warm = EDLAERecommender(**params).fit(new, FitContext(warm_start=WarmStart.between(earlier, OLD.user_ids, OLD.item_ids, new)))
    cold = EDLAERecommender(**params).fit(new)
    # user 20 has no new row, but its kept row went from {200} to {300}; user 10's weight is from its old row {100, 200}
    assert warm.warm_started_ and warm.items_.tolist() == [0, 3]
    np.testing.assert_allclose(warm.G_, cold.G_, atol=1e-6)
    np.testing.assert_allclose(warm.B_, cold.B_, atol=1e-5)


def test_grow_rows_moves_slices_along_any_axis_and_keeps_fresh_ones_where_the_map_has_none():
    old = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    fresh = np.zeros((2, 4))
    np.testing.assert_array_equal(grow_rows(old, np.array([2, -1, 0, 1]), fresh, axis=1), [[3, 0, 1, 2], [6, 0, 4, 5]])
    np.testing.assert_array_equal(grow_rows(old, np.array([1, -1, 0]), np.full((3, 3), 9.0)), [[4, 5, 6], [9, 9, 9], [1, 2, 3]])


def test_grow_rows_refuses_a_map_or_shape_that_does_not_fit():
    old = np.zeros((2, 3))
    with pytest.raises(ValueError, match="2 entries for 4 rows"):
        grow_rows(old, np.array([0, 1]), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="cannot grow"):
        grow_rows(old, np.array([0, 1]), np.zeros((2, 5)))
    with pytest.raises(IndexError, match="position 2"):
        grow_rows(old, np.array([2, 0]), np.zeros((2, 3)))


# ----------------------------------------------------------------------------- warm fits that cost what changed


def _warm(model_cls, params: dict, new=NEW):
    earlier = model_cls(**params).fit(OLD)
    return earlier, model_cls(**params).fit(new, FitContext(warm_start=WarmStart.between(earlier, OLD.user_ids, OLD.item_ids, new)))


def test_a_warm_start_knows_which_training_rows_are_new_and_which_users_changed():
    warm = WarmStart.between(EASERecommender(l2=1.0).fit(OLD), OLD.user_ids, OLD.item_ids, NEW)
    assert warm.new_row.tolist() == [False] * 5 + [True] * 3  # (10, 300), (5, 150), (5, 100)
    assert warm.changed_users(NEW).tolist() == [True, True, False, False]  # users 5 and 10 of 5, 10, 20, 30


def test_the_replay_sample_keeps_every_changed_row_and_a_seeded_bounded_share_of_the_others():
    changed = np.zeros(10, bool)
    changed[[0, 3]] = True
    one = replay_sample(changed, 1.0, np.random.default_rng(7))
    assert len(one) == 4 and {0, 3} <= set(one.tolist()) and one.tolist() == sorted(one.tolist())
    assert one.tolist() == replay_sample(changed, 1.0, np.random.default_rng(7)).tolist()
    assert replay_sample(changed, 0.0, np.random.default_rng(7)).tolist() == [0, 3]
    assert replay_sample(changed, 100.0, np.random.default_rng(7)).tolist() == list(range(10))  # at most every other row
    assert replay_sample(changed, None, np.random.default_rng(7)).tolist() == list(range(10))
    with pytest.raises(ValueError, match="warm_replay must be >= 0"):
        replay_sample(changed, -1.0, np.random.default_rng(7))


def test_a_warm_ease_within_its_threshold_keeps_yesterdays_weights_and_scores_tonights_history_with_them():
    earlier, warm = _warm(EASERecommender, {"l2": 1.0, "warm_resolve": 1.0})
    assert warm.warm_fit_["resolved"] is False and 0 < warm.warm_fit_["gram_change"] <= 1.0
    assert warm.solved_.tolist() == [True, False, True, True]  # item 150 is new: B has no column for it
    old_cols = [0, 2, 3]  # items 100, 200, 300 tonight
    np.testing.assert_array_equal(warm.B_[np.ix_(old_cols, old_cols)], earlier.B_)
    X = NEW.seen.toarray()
    scores = warm.score(np.arange(NEW.n_users))
    np.testing.assert_array_equal(scores[:, old_cols], (X[:, old_cols] @ earlier.B_).astype(np.float32))
    assert np.isneginf(scores[:, 1]).all()  # not recommended until the next solve
    cold = EASERecommender(l2=1.0).fit(NEW)
    np.testing.assert_array_equal(warm.G_, cold.G_)  # the Gram matrix stays exact for the next solve
    grown = np.zeros((4, 4), np.float32)
    grown[np.ix_(old_cols, old_cols)] = earlier.G_
    assert warm.gram_drift_ == pytest.approx(float(np.linalg.norm(cold.G_ - grown)))  # |dG|_F since the solve


def test_a_warm_ease_above_its_threshold_re_solves_and_equals_a_cold_fit():
    _, warm = _warm(EASERecommender, {"l2": 1.0, "warm_resolve": 0.0})
    cold = EASERecommender(l2=1.0, warm_resolve=0.0).fit(NEW)
    assert warm.warm_fit_["resolved"] is True and "above warm_resolve" in warm.warm_fit_["why"]
    np.testing.assert_array_equal(warm.B_, cold.B_)
    assert warm.gram_drift_ == 0.0 and warm.solved_.all()


def test_a_kept_ease_carries_its_drift_to_the_next_night_through_save_and_load(tmp_path):
    from recflow.models import load_model

    _, warm = _warm(EASERecommender, {"l2": 1.0, "warm_resolve": 1.0})
    warm.save(tmp_path / "ease")
    loaded = load_model(tmp_path / "ease")
    assert loaded.gram_drift_ == pytest.approx(warm.gram_drift_) and loaded.solved_.tolist() == warm.solved_.tolist()
    np.testing.assert_array_equal(loaded.score(np.arange(4)), warm.score(np.arange(4)))
    newer = _parts([*zip(NEW.user_ids[NEW.user_idx], NEW.item_ids[NEW.item_idx]), (30, 300)])
    night2 = EASERecommender(l2=1.0, warm_resolve=1.0).fit(newer, FitContext(warm_start=WarmStart.between(loaded, NEW.user_ids, NEW.item_ids, newer)))
    step = np.linalg.norm(EASERecommender(l2=1.0).fit(newer).G_ - warm.G_)  # user 30 adds item 300: the same item indices
    assert night2.warm_fit_["resolved"] is False and night2.gram_drift_ == pytest.approx(warm.gram_drift_ + step)
    np.testing.assert_array_equal(night2.B_, warm.B_)  # the same items in the same order: B as it was


def test_a_warm_mf_epoch_solves_only_the_changed_users_and_the_items_with_new_rows():
    from recflow.models.mf import BiasedMFRecommender

    earlier, warm = _warm(BiasedMFRecommender, {"factors": 2, "epochs": 3})
    assert warm.warm_fit_ == {"users_solved": 2, "of_users": 4, "items_solved": 3, "of_items": 4}  # users 5, 10; items 100, 150, 300
    np.testing.assert_array_equal(warm.user_factors_[2:], earlier.user_factors_[1:])  # users 20 and 30 keep theirs
    np.testing.assert_array_equal(warm.item_factors_[2], earlier.item_factors_[1])  # item 200 keeps its own


def test_a_warm_bpr_epoch_runs_over_the_changed_users_rows_and_its_replay_sample():
    from recflow.models.bpr import BPRRecommender

    _, warm = _warm(BPRRecommender, {"factors": 2, "epochs": 3, "warm_replay": 0.2})
    assert warm.warm_fit_ == {"changed_users": 2, "rows_per_epoch": 6, "of_rows": 8, "warm_replay": 0.2}  # 5 rows of users 5, 10 + ceil(0.2 x 5)
    _, every = _warm(BPRRecommender, {"factors": 2, "epochs": 3, "warm_replay": None})
    assert every.warm_fit_["rows_per_epoch"] == 8


def test_a_warm_item2vec_trains_the_changed_users_sentences_and_its_replay_sample():
    from recflow.models.item2vec import Item2VecRecommender

    params = {"dim": 4, "epochs": 2, "min_rating": 0.0, "window": 2}
    earlier, warm = _warm(Item2VecRecommender, {**params, "warm_replay": 0.0})
    # sentences: user 5 [150, 100], 10 [100, 200, 300], 20 [200, 300], 30 [100] (one token: trains nothing)
    assert warm.warm_fit_ == {"changed_sentences": 2, "sentences_trained": 2, "of_sentences": 3, "warm_replay": 0.0}
    assert warm.has_vector_.tolist() == [True, True, True, True]  # the whole vocabulary, new item 150 included
    _, replayed = _warm(Item2VecRecommender, {**params, "warm_replay": 1.0})
    assert replayed.warm_fit_["sentences_trained"] == 3
