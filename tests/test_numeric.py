"""recflow.utils.numeric.distinct: np.unique's answer by a sort (NumPy's hash-based unique is slow on millions of ids)."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.utils.numeric import distinct


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([3, 1, 3, 2, 1]), [1, 2, 3]),
        (np.array([], np.int64), []),
        (np.array([7]), [7]),
        (np.array([[2, 2], [0, 5]]), [0, 2, 5]),  # flattened, as np.unique
        (np.array([2**40, -1, 2**40], np.int64), [-1, 2**40]),
        (np.array([4, 4], np.uint8), [4]),
    ],
)
def test_distinct_is_sorted_unique(values, expected):
    got = distinct(values)
    assert got.tolist() == expected
    assert got.dtype == values.dtype


def test_distinct_of_floats_collapses_nan_as_np_unique():
    got = distinct(np.array([1.0, np.nan, 1.0, np.nan]))
    assert got[0] == 1.0 and np.isnan(got[1]) and len(got) == 2
