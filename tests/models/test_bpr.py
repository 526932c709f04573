"""bpr: MF with the BPR loss; its lazy Adam step by hand, its ranking on two planted taste groups."""

from __future__ import annotations

import numpy as np

from recflow.models import BPRRecommender
from recflow.models.bpr import _LazyAdam, _unseen_items
from recflow.prep.interactions import Interactions


def test_first_adam_step_moves_each_touched_weight_by_lr_against_its_gradient_sign():
    w = np.zeros((3, 2), np.float32)
    adam = _LazyAdam(w, lr=0.1)
    # row 0 twice: its gradients sum to (3, -1); row 2 once; row 1 untouched
    adam.step(np.array([0, 2, 0]), np.array([[1, -2], [-4, 0.5], [2, 1]], np.float32))
    np.testing.assert_allclose(w, [[-0.1, 0.1], [0, 0], [0.1, -0.1]], atol=1e-6)
    np.testing.assert_array_equal(adam.m[1], [0, 0])


def test_negatives_are_never_items_the_user_has_seen():
    n_items = 5
    seen = np.unique(np.array([0 * n_items + 0, 0 * n_items + 1, 0 * n_items + 2, 1 * n_items + 4]))
    users = np.array([0] * 500 + [1] * 500)
    items = _unseen_items(users, n_items, seen, np.random.default_rng(0))
    assert set(items[:500]) == {3, 4} and set(items[500:]) == {0, 1, 2, 3}


def two_taste_groups() -> tuple[Interactions, np.ndarray]:
    """Users 0-9 like items 0-4, users 10-19 like items 5-9; each user's last item of its group is held out."""
    users, items, held_out = [], [], []
    for u in range(20):
        group = range(5) if u < 10 else range(5, 10)
        chosen = [i for i in group if i != group[u % 5]]
        users += [u] * len(chosen)
        items += chosen
        held_out.append(group[u % 5])
    n = len(users)
    train = Interactions(np.asarray(users, np.int32), np.asarray(items, np.int32), np.ones(n, np.float32), np.zeros(n, np.int64), np.arange(20), np.arange(10))
    return train, np.asarray(held_out)


def test_ranks_the_held_out_item_of_the_users_taste_group_first():
    train, held_out = two_taste_groups()
    m = BPRRecommender(factors=4, lr=0.05, reg=0.0, epochs=60, batch_size=16, init_std=0.1, seed=0).fit(train)
    top, _ = m.recommend(np.arange(20), k=1)
    np.testing.assert_array_equal(top[:, 0], held_out)
    assert m.history_[-1]["loss"] < m.history_[0]["loss"]


def test_the_seed_fixes_the_factors_and_another_seed_changes_them():
    train, _ = two_taste_groups()
    a, b, c = (BPRRecommender(factors=4, epochs=2, seed=s).fit(train) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert not np.array_equal(a.user_factors_, c.user_factors_)
