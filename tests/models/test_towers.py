"""``towers.in_batch_softmax``, the one sampled softmax of two_tower and hybrid, against NumPy by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models.towers import in_batch_softmax, log_item_share

tf = pytest.importorskip("tensorflow")

USERS = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
ITEMS = np.array([[0.8, 0.6], [0.0, 1.0], [0.8, 0.6]], np.float32)  # rows 0 and 2 are one item (index 5)
IDX = np.array([5, 7, 5], np.int32)
LOG_Q = np.log(np.array([0.1] * 5 + [0.5, 0.1, 0.2], np.float32))


def softmax_by_hand(columns: list[list[int]], correction: bool) -> float:
    """Mean over rows ``b`` of -log softmax of slot ``b`` among the slots ``columns[b]`` (float64)."""
    logits = USERS.astype(np.float64) @ ITEMS.T.astype(np.float64) * 10.0
    if correction:
        logits = logits - LOG_Q[IDX][None, :].astype(np.float64)
    losses = [np.log(np.exp(logits[b, cols]).sum()) - logits[b, b] for b, cols in enumerate(columns)]
    return float(np.mean(losses))


def loss(**kw) -> float:
    return float(in_batch_softmax(tf, tf.constant(USERS), tf.constant(ITEMS), tf.constant(IDX), tf.constant(10.0), **kw))


def test_whole_batch_masks_duplicates_of_the_rows_own_item():
    # rows 0 and 2 hold item 5: neither counts the other's slot as a negative
    expected = softmax_by_hand([[0, 1], [0, 1, 2], [1, 2]], correction=False)
    assert loss() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_logq_correction_subtracts_each_slots_log_share():
    expected = softmax_by_hand([[0, 1], [0, 1, 2], [1, 2]], correction=True)
    assert loss(log_q=tf.constant(LOG_Q)) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_shared_negatives_are_the_batchs_first_positives():
    # M = 1: every row scores its own positive and slot 0, which rows 0 and 2 own (item 5)
    expected = softmax_by_hand([[0], [1, 0], [2]], correction=True)
    assert loss(log_q=tf.constant(LOG_Q), shared=1) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_shared_negatives_covering_the_batch_equal_the_whole_batch():
    assert loss(log_q=tf.constant(LOG_Q), shared=3) == pytest.approx(loss(log_q=tf.constant(LOG_Q)), rel=1e-5, abs=1e-6)


def test_log_item_share_counts_an_unseen_item_as_one():
    np.testing.assert_allclose(log_item_share(np.array([3.0, 0.0, 1.0])), np.log([0.75, 0.25, 0.25]))
