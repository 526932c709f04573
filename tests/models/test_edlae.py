"""EDLAERecommender: EASE's closed form with a per-item (dropout) and user-weighted ridge."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models.ease import EASERecommender
from recflow.models.edlae import EDLAERecommender
from recflow.prep.interactions import Interactions


def random_train(seed: int = 0, n_users: int = 30, n_items: int = 12, n: int = 120) -> Interactions:
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    u, i = pairs // n_items, pairs % n_items
    return Interactions(
        u.astype(np.int32), i.astype(np.int32), rng.integers(1, 6, n).astype(np.float32),
        np.zeros(n, np.int64), np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


def naive_edlae(X: np.ndarray, p: float, l2: float, a: float) -> np.ndarray:
    """The paper's formula in float64: W = D^-a X, Lambda = p/(1-p) diag(W^T W) + l2, zero diagonal."""
    n_u = X.sum(axis=1)
    W = X * np.where(n_u > 0, np.maximum(n_u, 1) ** -a, 0.0)[:, None]
    G = W.T @ W
    P = np.linalg.inv(G + np.diag(p / (1 - p) * np.diag(G) + l2))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def test_no_dropout_and_no_user_weighting_is_ease_exactly():
    train = random_train(seed=1)
    edlae = EDLAERecommender(dropout=0.0, l2=7.0, user_exponent=0.0).fit(train)
    ease = EASERecommender(l2=7.0).fit(train)
    np.testing.assert_array_equal(edlae.item_weights(), ease.item_weights())
    np.testing.assert_array_equal(edlae.score(np.arange(30)), ease.score(np.arange(30)))


def test_top_items_restricts_it_to_the_same_items_as_ease():
    train = random_train(seed=1)
    edlae = EDLAERecommender(dropout=0.0, l2=7.0, user_exponent=0.0, top_items=5).fit(train)
    ease = EASERecommender(l2=7.0, top_items=5).fit(train)
    np.testing.assert_array_equal(edlae.items_, ease.items_)
    np.testing.assert_array_equal(edlae.score(np.arange(30)), ease.score(np.arange(30)))


def test_two_items_by_hand():
    # X = [[1, 1], [1, 0], [0, 1]]: G = [[2, 1], [1, 2]]; p = 0.5 adds G_jj, l2 = 1: G + Lambda = [[5, 1], [1, 5]]
    # P = [[5, -1], [-1, 5]] / 24, B_01 = -P_01 / P_11 = 1/5 (EASE with l2 = 1 gives 1/3)
    two = Interactions(
        np.array([0, 0, 1, 2], np.int32), np.array([0, 1, 0, 1], np.int32), np.ones(4, np.float32),
        np.zeros(4, np.int64), np.arange(3), np.arange(2),
    )  # fmt: skip
    m = EDLAERecommender(dropout=0.5, l2=1.0, user_exponent=0.0).fit(two)
    np.testing.assert_allclose(m.item_weights(), [[0.0, 0.2], [0.2, 0.0]], atol=1e-7)


@pytest.mark.parametrize(("p", "l2", "a"), [(0.3, 2.0, 0.0), (0.6, 0.5, 0.25), (0.5, 0.0, 0.5)])
def test_weights_match_the_naive_formula(p, l2, a):
    train = random_train(seed=3)
    m = EDLAERecommender(dropout=p, l2=l2, user_exponent=a).fit(train)
    np.testing.assert_allclose(m.item_weights(), naive_edlae(train.seen.toarray(), p, l2, a), atol=1e-5)


@pytest.mark.parametrize(("p", "l2"), [(1.0, 1.0), (-0.1, 1.0), (0.5, -1.0), (0.0, 0.0)])
def test_bad_dropout_or_ridge_is_refused(p, l2):
    with pytest.raises(ValueError, match="dropout must lie in|l2 must be"):
        EDLAERecommender(dropout=p, l2=l2).fit(random_train())


def test_save_load_keeps_the_class_and_its_params(tmp_path):
    from recflow.models import load_model

    m = EDLAERecommender(dropout=0.4, l2=3.0, user_exponent=0.2).fit(random_train(seed=2))
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert type(back) is EDLAERecommender and back.get_params() == m.get_params()
    np.testing.assert_array_equal(back.score(np.arange(30)), m.score(np.arange(30)))
