"""Warm starts (``recflow.models.warm``): the id maps, the epoch rule, EASE's exact Gram update."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.models.context import FitContext
from recflow.models.ease import EASERecommender
from recflow.models.edlae import EDLAERecommender
from recflow.models.warm import WarmStart, grow_rows, warm_epochs
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


def test_a_top_items_ease_fits_cold_when_an_item_with_history_enters_its_subset():
    new = _parts([(10, 100), (10, 200), (20, 200), (20, 300), (30, 100), (10, 300), (5, 150), (5, 100), (30, 300)])  # 300 now ties 100
    warm, cold = _warm_and_cold({"l2": 1.0, "top_items": 2}, new)
    assert not warm.warm_started_ and warm.items_.tolist() == [0, 3]
    np.testing.assert_array_equal(warm.B_, cold.B_)


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
