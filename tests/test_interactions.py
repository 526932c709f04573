"""index_split: the dense user / item index every task builds from a split frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.prep.interactions import index_split


def frame(user_ids, item_ids, parts, categorical: bool) -> pd.DataFrame:
    n = len(user_ids)
    split = pd.Categorical(parts, categories=["test", "train"]) if categorical else parts
    return pd.DataFrame({"user_id": user_ids, "item_id": item_ids, "rating": np.full(n, 4.0), "timestamp": np.arange(n), "split": split})


@pytest.mark.parametrize("categorical", [True, False])
@pytest.mark.parametrize("big", [0, 10**15])  # small ids take the lookup table, huge ones np.unique
def test_sorted_distinct_ids_and_positions_per_part(categorical, big):
    f = frame(np.array([7, 3, 7, 9]) + big, np.array([20, 5, 5, 20]) + big, ["train", "train", "test", "train"], categorical)
    parts = index_split(f)
    train, test, valid = parts["train"], parts["test"], parts["valid"]
    np.testing.assert_array_equal(train.user_ids, np.array([3, 7, 9]) + big)
    np.testing.assert_array_equal(train.item_ids, np.array([5, 20]) + big)
    assert train.user_ids.dtype == np.int64 and train.user_idx.dtype == np.int32
    np.testing.assert_array_equal(train.user_idx, [1, 0, 2])
    np.testing.assert_array_equal(train.item_idx, [1, 0, 1])
    np.testing.assert_array_equal(test.user_idx, [1])
    np.testing.assert_array_equal(test.item_idx, [0])
    assert len(valid) == 0 and valid.n_users == 3  # a part absent from the categories is empty, on the same index
