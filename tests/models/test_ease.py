"""EASERecommender (closed-form item-item ridge autoencoder) on tiny hand-checkable data."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models import load_model
from recflow.models.base import NotFittedError
from recflow.models.ease import EASERecommender, _fill_lower_from_upper
from recflow.prep.interactions import Interactions


def interactions(users, items, ratings, n_users, n_items) -> Interactions:
    return Interactions(
        np.asarray(users, np.int32), np.asarray(items, np.int32), np.asarray(ratings, np.float32),
        np.zeros(len(users), np.int64), np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


# 3 users x 2 items: user 0 has both, user 1 item 0, user 2 item 1
TWO_ITEMS = interactions([0, 0, 1, 2], [0, 1, 0, 1], [5, 4, 3, 2], 3, 2)


def random_train(seed: int = 0, n_users: int = 30, n_items: int = 12, n: int = 120) -> Interactions:
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    return interactions(pairs // n_items, pairs % n_items, rng.integers(1, 6, n), n_users, n_items)


def naive_ease(X: np.ndarray, l2: float) -> np.ndarray:
    """The textbook float64 EASE, independent of the model's in-place LAPACK route."""
    X = np.asarray(X, np.float64)
    G = X.T @ X + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def test_two_item_weights_by_hand():
    # G = X^T X + I = [[3, 1], [1, 3]], P = [[3, -1], [-1, 3]] / 8, B_01 = -P_01 / P_11 = 1/3
    m = EASERecommender(l2=1.0).fit(TWO_ITEMS)
    np.testing.assert_allclose(m.item_weights(), [[0.0, 1 / 3], [1 / 3, 0.0]], atol=1e-7)
    assert m.item_weights().dtype == np.float32
    # score(u) = X_u B: user 1 has item 0 -> [0, 1/3]; user 0 has both -> [1/3, 1/3]
    np.testing.assert_allclose(m.score(np.array([0, 1, 2])), [[1 / 3, 1 / 3], [0, 1 / 3], [1 / 3, 0]], atol=1e-7)


def test_weights_match_naive_float64_implementation():
    train = random_train(seed=3)
    m = EASERecommender(l2=2.0).fit(train)
    expected = naive_ease(train.seen.toarray(), 2.0)
    np.testing.assert_allclose(m.item_weights(), expected, atol=1e-5)
    assert np.all(np.diag(m.item_weights()) == 0)


# TWO_ITEMS plus a third, least popular item: counts 2, 2, 1
THREE_ITEMS = interactions([0, 0, 1, 2, 2], [0, 1, 0, 1, 2], [5, 4, 3, 2, 1], 3, 3)


def test_top_items_fits_the_most_popular_items_and_never_recommends_the_rest():
    m = EASERecommender(l2=1.0, top_items=2).fit(THREE_ITEMS)
    np.testing.assert_array_equal(m.items_, [0, 1])
    # on items 0 and 1 the data are TWO_ITEMS's, so B is too; item 2 scores -inf for everyone
    np.testing.assert_allclose(m.item_weights(), [[0.0, 1 / 3], [1 / 3, 0.0]], atol=1e-7)
    inf = -np.inf
    np.testing.assert_allclose(m.score(np.array([0, 1, 2])), [[1 / 3, 1 / 3, inf], [0, 1 / 3, inf], [1 / 3, 0, inf]], atol=1e-7)
    items, _ = m.recommend(np.array([1]), k=2)  # user 1 has seen item 0: item 1, then nothing
    np.testing.assert_array_equal(items, [[1, -1]])


def test_top_items_ties_go_to_the_lower_index_and_survive_save_load(tmp_path):
    m = EASERecommender(l2=1.0, top_items=1).fit(THREE_ITEMS)  # items 0 and 1 tie at 2 interactions
    np.testing.assert_array_equal(m.items_, [0])
    m.save(tmp_path / "ease")
    loaded = load_model(tmp_path / "ease")
    np.testing.assert_array_equal(loaded.items_, [0])
    np.testing.assert_array_equal(loaded.score(np.arange(3)), [[0, -np.inf, -np.inf]] * 3)


def test_top_items_is_checked_against_max_items():
    with pytest.raises(ValueError, match="max_items"):
        EASERecommender(top_items=3, max_items=2).fit(THREE_ITEMS)
    EASERecommender(top_items=2, max_items=2).fit(THREE_ITEMS)  # the subset fits even though the catalogue does not


def test_fill_lower_from_upper_across_blocks():
    # the helper symmetrises in blocks of 1024 on real data; a block of 2 exercises every branch on 5 x 5
    rng = np.random.default_rng(0)
    full = rng.normal(size=(5, 5))
    full = full + full.T
    a = np.triu(full) + np.tril(np.full((5, 5), 99.0), -1)  # garbage below the diagonal
    _fill_lower_from_upper(a, block=2)
    np.testing.assert_array_equal(a, full)


def test_score_and_recommend_shapes():
    train = random_train()
    m = EASERecommender(l2=5.0).fit(train)
    s = m.score(np.array([0, 4, 7]))
    assert s.shape == (3, 12) and s.dtype == np.float32
    items, scores = m.recommend(np.array([0, 4, 7]), k=3)
    assert items.shape == (3, 3) and scores.shape == (3, 3)
    assert items.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert m.history_ == [] and EASERecommender.predicts_ratings is False


def test_recommend_excludes_seen_items():
    train = random_train()
    m = EASERecommender(l2=5.0).fit(train)
    items, _ = m.recommend(np.arange(30), k=12)
    seen = train.seen.toarray().astype(bool)
    for u in range(30):
        rec = items[u][items[u] >= 0]
        assert not seen[u, rec].any()
        assert len(rec) == (~seen[u]).sum()  # every unseen item is ranked, the tail is -1


def test_two_fits_give_identical_recommendations():
    train = random_train(seed=1)
    a = EASERecommender(l2=3.0).fit(train).recommend(np.arange(30), k=5)
    b = EASERecommender(l2=3.0).fit(train).recommend(np.arange(30), k=5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_save_load_round_trip(tmp_path):
    train = random_train(seed=2)
    m = EASERecommender(l2=4.0, implicit_threshold=3.0, max_items=100).fit(train)
    m.save(tmp_path / "ease")
    for loaded in (EASERecommender.load(tmp_path / "ease"), load_model(tmp_path / "ease")):
        assert type(loaded) is EASERecommender
        assert loaded.get_params() == {"l2": 4.0, "implicit_threshold": 3.0, "max_items": 100, "top_items": None, "warm_resolve": 0.02}
        np.testing.assert_array_equal(loaded.item_weights(), m.item_weights())
        assert (loaded.X_ != m.X_).nnz == 0
        np.testing.assert_array_equal(loaded.score(np.arange(30)), m.score(np.arange(30)))
        for x, y in zip(m.recommend(np.arange(30), k=5), loaded.recommend(np.arange(30), k=5)):
            np.testing.assert_array_equal(x, y)


def test_unfitted_model_raises():
    m = EASERecommender()
    with pytest.raises(NotFittedError):
        m.recommend(np.array([0]))
    with pytest.raises(NotFittedError):
        m.score(np.array([0]))
    with pytest.raises(NotFittedError):
        m.item_weights()
    with pytest.raises(NotFittedError):
        m.save("unused")


@pytest.mark.parametrize("l2", [0.0, -1.0, float("nan")])
def test_non_positive_l2_is_refused(l2):
    with pytest.raises(ValueError, match="l2 must be > 0"):
        EASERecommender(l2=l2).fit(TWO_ITEMS)


def test_catalogue_above_max_items_is_refused():
    train = random_train()  # 12 items
    with pytest.raises(ValueError, match=r"dense 12 x 12 item-item matrix.*max_items=11") as err:
        EASERecommender(max_items=11).fit(train)
    assert "mf" in str(err.value) and "user_cf" in str(err.value)
    EASERecommender(max_items=12).fit(train)  # the limit itself is allowed


def test_implicit_threshold_binarises_ratings():
    # user 0: item 0 rated 5, item 1 rated 2 ; user 1: item 1 rated 4, item 2 rated 3 ; user 2: item 2 rated 1
    train = interactions([0, 0, 1, 1, 2], [0, 1, 1, 2, 2], [5, 2, 4, 3, 1], 3, 3)
    m = EASERecommender(l2=1.0, implicit_threshold=3.0).fit(train)
    kept = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], np.float32)  # ratings >= 3 only
    np.testing.assert_array_equal(m.X_.toarray(), kept)
    np.testing.assert_allclose(m.item_weights(), naive_ease(kept, 1.0), atol=1e-6)
    # without a threshold every interaction counts, whatever its rating
    m_all = EASERecommender(l2=1.0).fit(train)
    np.testing.assert_array_equal(m_all.X_.toarray(), train.seen.toarray())
    # an item rated below the threshold is still something the user has seen: never recommended
    items, _ = m.recommend(np.array([0]), k=3)
    assert items[0].tolist() == [2, -1, -1]
