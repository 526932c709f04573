"""Item2VecRecommender (and the shared ItemVectorRecommender) on a tiny two-cluster data set."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models.base import NotFittedError
from recflow.models.context import FitContext
from recflow.models.item2vec import Item2VecRecommender
from recflow.prep import sample_files as F
from recflow.prep import sampling as S
from recflow.prep.interactions import Interactions

N_ITEMS = 22  # cluster A: 0-9, cluster B: 10-19, 20: never liked, 21: liked alone by one user


def two_clusters(seed: int = 0) -> Interactions:
    """60 users, each liking 6 items of their cluster and disliking 2 of the other one.

    User 60 likes only item 21 (a one-item sentence: no vector); user 61 likes nothing (rates
    items 0 and 1 low). Item 20 is only ever rated 1.
    """
    rng = np.random.default_rng(seed)
    u, i, r = [], [], []
    for user in range(60):
        own, other = (0, 10) if user < 30 else (10, 0)
        liked = own + rng.choice(10, 6, replace=False)
        disliked = other + rng.choice(10, 2, replace=False)
        u += [user] * 8
        i += liked.tolist() + disliked.tolist()
        r += [5] * 6 + [2] * 2
    u += [60, 61, 61] + list(range(0, 60, 6))
    i += [21, 0, 1] + [20] * 10
    r += [5, 2, 2] + [1] * 10
    n = len(u)
    return Interactions(
        np.array(u, np.int32),
        np.array(i, np.int32),
        np.array(r, np.float32),
        rng.integers(0, 1000, n).astype(np.int64),
        np.arange(62),
        np.arange(N_ITEMS),
    )


PARAMS = dict(dim=8, window=5, epochs=30, negative=3, sample=0.0, seed=0)


@pytest.fixture(scope="module")
def train() -> Interactions:
    return two_clusters()


@pytest.fixture(scope="module", params=["in_out", "cosine"])
def model(train, request) -> Item2VecRecommender:
    return Item2VecRecommender(**PARAMS, scoring=request.param).fit(train)


def cluster(item: np.ndarray) -> np.ndarray:
    return np.where(item < 10, 0, np.where(item < 20, 1, -1))


def test_shapes_and_vector_mask(model, train):
    emb = model.item_embeddings()
    assert emb.shape == (N_ITEMS, 8) and emb.dtype == np.float32
    assert model.has_vector_.tolist() == [True] * 20 + [False, False]
    assert np.all(emb[20:] == 0) and np.all(np.linalg.norm(emb[:20], axis=1) > 0)
    scores = model.score(np.array([0, 40, 61]))
    assert scores.shape == (3, N_ITEMS) and scores.dtype == np.float32
    assert np.all(np.isneginf(scores[:, 20:]))  # no vector: never recommended, not "similar to all"
    unit = emb[:20] / np.linalg.norm(emb[:20], axis=1, keepdims=True)
    items = unit if model.scoring == "cosine" else model.context_vectors_[:20]
    np.testing.assert_allclose(scores[:, :20], model.user_vectors_[[0, 40, 61]] @ items.T, rtol=1e-5, atol=1e-6)
    if model.scoring == "cosine":
        assert np.all(np.abs(scores[:, :20]) <= 1 + 1e-5)
    assert model.context_vectors_.shape == (N_ITEMS, 8) and np.all(model.context_vectors_[20:] == 0)
    assert model.user_vectors_.shape == (62, 8)
    assert model.history_ == []


def test_recommend_excludes_seen_and_follows_clusters(model, train):
    users = np.arange(60)
    rec, sc = model.recommend(users, k=N_ITEMS)
    seen = train.seen.toarray().astype(bool)
    for row, u in zip(rec, users):
        got = row[row >= 0]
        assert not seen[u, got].any()
        assert not np.isin(got, [20, 21]).any()
        assert len(got) == 20 - seen[u, :20].sum()
    top2 = rec[:, :2]
    same = cluster(top2) == np.where(users < 30, 0, 1)[:, None]
    assert same.mean() > 0.9


def test_user_vector_falls_back_to_all_train_items(model):
    unit = model.item_embeddings()[[0, 1]]
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    expected = unit.mean(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(model.user_vectors_[61], expected, rtol=1e-5, atol=1e-6)
    assert np.all(model.user_vectors_[60] == 0)  # liked only a vectorless item, nothing else


def test_similar_items(model):
    items, scores = model.similar_items(3, k=5)
    assert items.shape == (5,) and scores.shape == (5,)
    assert 3 not in items and np.all(cluster(items) == 0)
    assert np.all(np.diff(scores) <= 0)
    batch_items, batch_scores = model.similar_items(np.array([3, 15, 20]), k=25)
    assert batch_items.shape == (3, 25)
    np.testing.assert_array_equal(batch_items[0, :5], items)
    for q, row in zip([3, 15, 20], batch_items):
        assert q not in row
        assert not np.isin(row, [20, 21]).any()
    assert np.all(batch_items[2] == -1) and np.all(np.isneginf(batch_scores[2]))  # query without a vector
    assert (batch_items[0] >= 0).sum() == 19  # everything with a vector but the query, then padding
    with pytest.raises(IndexError):
        model.similar_items(N_ITEMS)


def test_seeded_fit_is_deterministic(train, model):
    again = Item2VecRecommender(**model.get_params()).fit(train)
    np.testing.assert_array_equal(again.item_embeddings(), model.item_embeddings())
    other = Item2VecRecommender(**{**PARAMS, "seed": 1}).fit(train)
    assert not np.array_equal(other.item_embeddings(), model.item_embeddings())


def test_save_load_round_trip(model, tmp_path):
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "params.json", "vectors.bin"]
    back = Item2VecRecommender.load(tmp_path / "m")
    assert back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.item_embeddings(), model.item_embeddings())
    np.testing.assert_array_equal(back.has_vector_, model.has_vector_)
    np.testing.assert_array_equal(back.context_vectors_, model.context_vectors_)
    users = np.arange(62)
    for a, b in zip(back.recommend(users, k=8), model.recommend(users, k=8)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(back.similar_items(np.arange(N_ITEMS), k=4), model.similar_items(np.arange(N_ITEMS), k=4)):
        np.testing.assert_array_equal(a, b)


def test_uses_precomputed_sequences_when_they_match(train, tmp_path):
    seqs = S.liked_sequences(train, min_rating=4.0)
    only_a = [s[s < 10] for s in seqs]  # a deliberately different corpus: cluster A only
    F.write_samples(tmp_path, train=train, sequences=only_a, params={"sequences": {"min_rating": 4.0}})
    m = Item2VecRecommender(**PARAMS).fit(train, FitContext(samples=tmp_path))
    assert m.has_vector_.tolist() == [True] * 10 + [False] * 12
    with pytest.warns(UserWarning, match="other settings"):
        m = Item2VecRecommender(**{**PARAMS, "min_rating": 5.0}).fit(train, FitContext(samples=tmp_path))
    assert m.has_vector_[:20].all()  # recomputed from train
    m = Item2VecRecommender(**PARAMS).fit(train, FitContext(samples=tmp_path / "absent"))
    assert m.has_vector_[:20].all()


def test_loss_history_and_epoch_callback(train):
    calls = []
    m = Item2VecRecommender(**{**PARAMS, "epochs": 3, "compute_loss": True}).fit(train, FitContext(on_epoch_end=lambda e, d: calls.append((e, d))))
    assert [h["epoch"] for h in m.history_] == [1, 2, 3]
    assert all(h["loss"] > 0 for h in m.history_)
    assert [c[0] for c in calls] == [1, 2, 3] and calls[0][1] == {"loss": m.history_[0]["loss"]}


def test_min_count_drops_rare_items(train):
    m = Item2VecRecommender(**{**PARAMS, "min_count": 1000}).fit(train)
    assert not m.has_vector_.any()
    rec, _ = m.recommend(np.arange(3), k=5)
    assert np.all(rec == -1)


def test_not_fitted_and_bad_params(train):
    with pytest.raises(NotFittedError):
        Item2VecRecommender().similar_items(0)
    with pytest.raises(NotFittedError):
        Item2VecRecommender().recommend(np.array([0]))
    with pytest.raises(ValueError):
        Item2VecRecommender(dim=0).fit(train)
    with pytest.raises(ValueError, match="scoring"):
        Item2VecRecommender(scoring="dot").fit(train)
